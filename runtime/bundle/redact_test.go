package bundle

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"go.starlark.net/starlark"
)

// hostile holds every character some output escapes.
const hostile = `p"a\ss<w>&'rd`

// escapings are the ways outputs write a string, computed here with the
// libraries that write them rather than with the redactor's own table.
func escapings(s string) map[string]string {
	jsonOf := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	xmlOf := func(s string) string { var b strings.Builder; xml.EscapeText(&b, []byte(s)); return b.String() }
	var slogText, slogJSON bytes.Buffer
	slog.New(slog.NewTextHandler(&slogText, nil)).Info("x", "v", s)
	slog.New(slog.NewJSONHandler(&slogJSON, nil)).Info("x", "v", s)
	return map[string]string{
		"raw":            s,
		"%q":             fmt.Sprintf("%q", s),
		"%+q":            fmt.Sprintf("%+q", s),
		"%q of []string": fmt.Sprintf("%q", []string{"x", s}),
		"json":           jsonOf(s),
		"starlark repr":  starlark.String(s).String(),
		"xml":            xmlOf(s),
		"html":           html.EscapeString(s),
		"json of %q":     jsonOf(strconv.Quote("output: " + s + "!")),
		"xml of %q":      xmlOf(strconv.Quote(s)),
		"json of repr":   jsonOf(starlark.String(s).String()),
		"xml of repr":    xmlOf(starlark.String(s).String()),
		"%q of json":     strconv.Quote(jsonOf(s)),
		"json of json":   jsonOf(jsonOf(s)),
		"slog text":      slogText.String(),
		"slog json":      slogJSON.String(),
	}
}

// leaks reports which escaping of secret out still holds: the inner part
// of every escaping (without the quotes the encoder adds), so that a form
// embedded in a longer quoted message is found too.
func leaks(out, secret string) []string {
	var found []string
	for _, f := range innerForms(secret) {
		if strings.Contains(out, f.text) {
			found = append(found, f.name)
		}
	}
	return found
}

type namedForm struct{ name, text string }

func innerForms(s string) []namedForm {
	inner := func(q string) string { return q[1 : len(q)-1] }
	jsonOf := func(s string) string { b, _ := json.Marshal(s); return inner(string(b)) }
	xmlOf := func(s string) string { var b strings.Builder; xml.EscapeText(&b, []byte(s)); return b.String() }
	q := inner(strconv.Quote(s))
	repr := inner(starlark.String(s).String())
	return []namedForm{
		{"raw", s}, {"%q", q}, {"%+q", inner(strconv.QuoteToASCII(s))}, {"json", jsonOf(s)},
		{"starlark repr", repr}, {"xml", xmlOf(s)}, {"html", html.EscapeString(s)},
		{"json of %q", jsonOf(q)}, {"xml of %q", xmlOf(q)}, {"json of repr", jsonOf(repr)},
		{"xml of repr", xmlOf(repr)}, {"%q of json", inner(strconv.Quote(jsonOf(s)))},
	}
}

func TestRedactorMasksEscapedForms(t *testing.T) {
	// The second secret begins with characters that escapers change, so
	// its forms begin with different bytes.
	for _, secret := range []string{hostile, "\"\\<lead&\t\n\u00e9"} {
		r := NewRedactor(secret)
		for name, text := range escapings(secret) {
			msg := "before " + text + " after"
			got := r.String(msg)
			if l := leaks(got, secret); len(l) > 0 {
				t.Errorf("String(%s form %q) = %q, which holds the %v form", name, msg, got, l)
			}
			if !strings.Contains(got, Mask) || !strings.HasPrefix(got, "before ") || !strings.HasSuffix(got, " after") {
				t.Errorf("String(%s form %q) = %q, want the secret masked and the rest kept", name, msg, got)
			}
		}
	}
	r := NewRedactor(hostile)
	// Unrelated text is untouched, quotes and all.
	if s := `say "hi" & <bye> \n`; r.String(s) != s {
		t.Errorf("String(%q) = %q, want it unchanged", s, r.String(s))
	}
}

// A shorter secret matching first must not let a longer one that begins
// inside its match (or extends it) show: every position is tried and
// overlapping matches are masked as one.
func TestRedactorOverlaps(t *testing.T) {
	for _, tc := range []struct {
		secrets []string
		in      string
		want    string
	}{
		{[]string{"ab", "abcd"}, "xabcdx", "x" + Mask + "x"},
		{[]string{"abc", "cdef"}, "xabcdefx", "x" + Mask + "x"},
		{[]string{"abc", "cde"}, "abc cde abcde", Mask + " " + Mask + " " + Mask},
		{[]string{"aa"}, "aaaaa b", Mask + " b"},
		// more first bytes than the scan jumps between
		{[]string{"ab", "bc", "cd", "de", "ef"}, "xabcdefx ef", "x" + Mask + "x " + Mask},
	} {
		r := NewRedactor(tc.secrets...)
		if got := r.String(tc.in); got != tc.want {
			t.Errorf("NewRedactor(%q).String(%q) = %q, want %q", tc.secrets, tc.in, got, tc.want)
		}
		// and the same in chunks of one byte
		var buf bytes.Buffer
		w := NewStreamWriter(r, &buf)
		for i := range len(tc.in) {
			w.Write([]byte{tc.in[i]})
		}
		w.Flush()
		if buf.String() != tc.want {
			t.Errorf("NewRedactor(%q) streaming %q byte by byte = %q, want %q", tc.secrets, tc.in, buf.String(), tc.want)
		}
	}
}

// FuzzRedactorForms writes text holding escaped forms of a fuzzed secret
// in chunks: the result must equal the whole text masked at once, and no
// form of either secret may survive.
func FuzzRedactorForms(f *testing.F) {
	f.Add(hostile, "a "+hostile+" b", uint8(3), uint8(0))
	f.Add(hostile, `err: "p\"a\\ss<w>&'rd" x`, uint8(1), uint8(1))
	f.Add(`\"`, `\\\"\"\\"`, uint8(2), uint8(2))
	f.Add("ab", "abababa", uint8(1), uint8(3))
	f.Add("x\ny", "x\\ny x&#xA;y", uint8(5), uint8(4))
	f.Fuzz(func(t *testing.T, secret, text string, step, form uint8) {
		if secret == "" || strings.ContainsRune(secret, '*') {
			return // a secret inside the mask itself cannot be told apart
		}
		if len(secret) > 64 || len(text) > 4096 {
			return // the cost of byte-sized writes grows with both
		}
		// Put one escaped form of the secret inside the text, so the
		// fuzzer starts from masked input.
		forms := innerForms(secret)
		text = text[:len(text)/2] + forms[int(form)%len(forms)].text + text[len(text)/2:]
		if step == 0 {
			step = 1
		}
		r := NewRedactor(secret, hostile)
		var whole, chunked bytes.Buffer
		w1 := NewStreamWriter(r, &whole)
		w1.Write([]byte(text))
		w1.Flush()
		w2 := NewStreamWriter(r, &chunked)
		for i := 0; i < len(text); i += int(step) {
			w2.Write([]byte(text[i:min(i+int(step), len(text))]))
		}
		w2.Flush()
		if whole.String() != chunked.String() {
			t.Fatalf("chunked by %d: %q, whole: %q", step, chunked.String(), whole.String())
		}
		if got := r.String(text); got != whole.String() {
			t.Fatalf("String(%q) = %q, stream %q", text, got, whole.String())
		}
		for _, s := range []string{secret, hostile} {
			if l := leaks(whole.String(), s); len(l) > 0 {
				t.Fatalf("redacted %q = %q, which holds the %v form of %q", text, whole.String(), l, s)
			}
		}
	})
}
