package bundle

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// consoleBundle writes a bundle whose stage "flood" wrote console, and
// returns its report.html.
func consoleBundle(t *testing.T, console func(w func([]byte))) (dir string, page []byte) {
	t.Helper()
	dir = t.TempDir()
	b, err := Create(dir, Result{Job: "j", Stages: []Stage{{Name: "flood", Status: "pending"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.Emit("job_start", map[string]any{"job": "j"})
	b.Emit("stage_start", map[string]any{"stage": "flood", "attempt": 1})
	console(func(p []byte) { b.Console().Write(p) })
	b.Emit("stage_end", map[string]any{"stage": "flood", "outcome": "pass"})
	b.Emit("job_end", map[string]any{"status": "pass"})
	b.Update(func(r *Result) { r.Status = "pass" })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	page, err = os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatalf("Close wrote no report.html: %v", err)
	}
	return dir, page
}

// A 50 MB console makes a report of a few MiB: the stage's first and last
// ReportConsoleEdge bytes, the bytes left out named, with a link to
// console.log.
func TestReportBigConsole(t *testing.T) {
	const size = 50 << 20
	line := []byte(strings.Repeat("x", 99) + "\n")
	chunk := bytes.Repeat(line, 10000) // 1 MB
	dir, page := consoleBundle(t, func(w func([]byte)) {
		w([]byte("first line of the flood\n"))
		for n := 0; n < size; n += len(chunk) {
			w(chunk)
		}
		w([]byte("last line of the flood\n"))
	})
	if fi, _ := os.Stat(filepath.Join(dir, "console.log")); fi.Size() < size {
		t.Fatalf("console.log is %d bytes, want %d", fi.Size(), size)
	}
	if len(page) > 4<<20 {
		t.Errorf("report.html of a 50 MB console is %d bytes, want at most 4 MiB", len(page))
	}
	for _, want := range []string{"first line of the flood", "last line of the flood", "MiB left out", `href="console.log"`} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("report.html lacks %q", want)
		}
	}
}

// A console of binary garbage — every byte value, invalid UTF-8, terminal
// escapes and markup — renders as text: no element comes from it, every
// control byte shows as \xNN, and the page is valid UTF-8.
func TestReportEscapesBinaryConsole(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rng.UintN(256))
	}
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	_, page := consoleBundle(t, func(w func([]byte)) {
		w([]byte("<script>alert(1)</script><img src=x onerror=alert(2)>\x1b[31mred\x1b[0m \xff\xfe </div></body>\n"))
		w(all)
		w(garbage)
		w([]byte("\nend of garbage\n"))
	})
	if !utf8.Valid(page) {
		t.Error("report.html is not valid UTF-8")
	}
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			counts[n.Data]++
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") {
					t.Errorf("element <%s> has an event handler %s=%q", n.Data, a.Key, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if counts["script"] != 1 || counts["img"] != 0 {
		t.Errorf("report.html has %d <script> and %d <img> elements, want its own one script and no img", counts["script"], counts["img"])
	}
	for _, want := range []string{`&lt;script&gt;alert(1)&lt;/script&gt;`, `\x1b[31mred\x1b[0m`, `\xff\xfe`, `\x00\x01\x02`, "end of garbage"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("report.html lacks %q", want)
		}
	}
}

// printable(b) shows bytes as text a person can read back.
func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		in    string
		width int
		want  string
	}{
		{"plain text", 80, "plain text"},
		{"tab\there\r", 80, "tab here"},
		{"\x1b[1mbold", 80, `\x1b[1mbold`},
		{"caf\xc3\xa9 \xc3", 80, `café \xc3`},
		{"\u0085next", 80, `\xc2\x85next`},
		{strings.Repeat("a", 10), 4, "aaaa…"},
		{"aaaa", 4, "aaaa"},
	} {
		if got := printable([]byte(tc.in), tc.width); got != tc.want {
			t.Errorf("printable(%q, %d) = %q, want %q", tc.in, tc.width, got, tc.want)
		}
	}
}

func BenchmarkReportBigConsole(b *testing.B) {
	dir := b.TempDir()
	bd, err := Create(dir, Result{Job: "j"}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	bd.Emit("stage_start", map[string]any{"stage": "flood", "attempt": 1})
	chunk := bytes.Repeat([]byte(strings.Repeat("y", 79)+"\n"), 1<<14)
	for n := 0; n < 50<<20; n += len(chunk) {
		bd.Console().Write(chunk)
	}
	for i := 0; i < 2000; i++ {
		bd.Emit("expect", map[string]any{"pattern": fmt.Sprint(i), "outcome": "ok"})
	}
	bd.Update(func(r *Result) { r.Status = "pass" })
	bd.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := WriteReport(dir, nil); err != nil {
			b.Fatal(err)
		}
	}
	fi, _ := os.Stat(filepath.Join(dir, "report.html"))
	b.ReportMetric(float64(fi.Size()), "report-bytes")
}
