package bundle

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
)

const secret = "hunter2-s3cr3t"

func TestSecretsNeverWritten(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	b, err := Create(dir, Result{Job: "j"}, Options{Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	b.Emit("call", map[string]any{"args": []string{"password=" + secret}})
	b.Print("typed " + secret)
	b.TestCase(builtins.TestCase{Name: "login " + secret, Result: "pass"})
	// the secret split across console writes
	for _, chunk := range []string{"login: root\r\nPassword: hun", "ter2-s3", "cr3t\r\n# "} {
		b.Console().Write([]byte(chunk))
	}
	b.Artifact("a.txt", strings.NewReader("x"), "")
	b.Update(func(r *Result) {
		r.Status = "error"
		r.Error = &ErrorInfo{Class: "infra", Message: "bmc rejected " + secret}
	})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("%s holds the secret", p)
		}
		return nil
	})
	con, _ := os.ReadFile(filepath.Join(dir, "console.log"))
	if want := "login: root\r\nPassword: " + Mask + "\r\n# "; string(con) != want {
		t.Errorf("console.log = %q, want %q", con, want)
	}
}

// Chunk boundaries anywhere give the same redacted stream as one write.
func FuzzStreamWriter(f *testing.F) {
	f.Add("abc hunter2-s3cr3t def hunter2-s3cr3", uint8(3))
	f.Add("hunhunter2-s3cr3thun", uint8(1))
	f.Fuzz(func(t *testing.T, text string, step uint8) {
		if step == 0 {
			step = 1
		}
		r := NewRedactor(secret, "ter2")
		var whole, chunked bytes.Buffer
		w1 := NewStreamWriter(r, &whole)
		w1.Write([]byte(text))
		w1.Flush()
		w2 := NewStreamWriter(r, &chunked)
		for i := 0; i < len(text); i += int(step) {
			end := min(i+int(step), len(text))
			w2.Write([]byte(text[i:end]))
		}
		w2.Flush()
		if whole.String() != chunked.String() {
			t.Fatalf("chunked %q, whole %q", chunked.String(), whole.String())
		}
		if strings.Contains(whole.String(), secret) {
			t.Fatalf("secret survived: %q", whole.String())
		}
	})
}

func TestEventsOneLinePerEvent(t *testing.T) {
	dir := t.TempDir()
	b, err := Create(dir, Result{Job: "j"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		b.Emit("x", map[string]any{"i": i, "s": "line\nbreak"})
	}
	// before Close, every line is already complete JSON
	data, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 100 {
		t.Fatalf("%d lines, want 100", len(lines))
	}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if m["seq"].(float64) != float64(i+1) {
			t.Errorf("line %d seq = %v", i, m["seq"])
		}
	}
	b.Close()
}

func TestResultExistsFromTheStart(t *testing.T) {
	dir := t.TempDir()
	b, err := Create(dir, Result{Job: "j"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	data, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &r); err != nil || r.Status != "running" || r.SchemaVersion != 1 {
		t.Errorf("result.json = %s (%v), want status running, schema 1", data, err)
	}
	b.Close()
	if _, err := Create(dir, Result{Job: "j"}, Options{}); err == nil {
		t.Error("Create on an existing bundle succeeded")
	}
}

func TestArtifactChecksAndConfines(t *testing.T) {
	b, _ := Create(t.TempDir(), Result{Job: "j"}, Options{})
	defer b.Close()
	if _, err := b.Artifact("x", strings.NewReader("data"), "00"); err == nil {
		t.Error("artifact with a wrong sha256 stored")
	}
	rel, err := b.Artifact("../../etc/evil", strings.NewReader("data"), "")
	if err != nil || rel != "artifacts/etc/evil" {
		t.Errorf("Artifact(../../etc/evil) = %q, %v; want artifacts/etc/evil", rel, err)
	}
}

func TestJUnit(t *testing.T) {
	m := 3.5
	r := Result{Job: "j", Stages: []Stage{{Name: "s", DurationMS: 1500}},
		Tests: []builtins.TestCase{{Name: "a", Result: "pass", Stage: "s"}, {Name: "b", Result: "fail", Stage: "s", Measurement: &m, Units: "s"}, {Name: "c", Result: "skip", Stage: "s"}},
		Error: &ErrorInfo{Class: "device", Message: "kernel panic", Stage: "s"}}
	out, err := JUnit(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got junitSuites
	if err := xml.Unmarshal(out, &got); err != nil {
		t.Fatalf("junit.xml does not parse: %v\n%s", err, out)
	}
	if got.Tests != 4 || got.Failures != 1 || got.Errors != 1 {
		t.Errorf("tests/failures/errors = %d/%d/%d, want 4/1/1", got.Tests, got.Failures, got.Errors)
	}
	if len(got.Suites) != 1 || got.Suites[0].Name != "j.s" || got.Suites[0].Skipped != 1 {
		t.Errorf("suites = %+v", got.Suites)
	}
}

// ciCase is a <testcase> as GitLab's and Jenkins' JUnit readers see it
// (gitlab-ci's Gitlab::Ci::Parsers::Test::Junit, Jenkins' junit plugin's
// CaseResult): name, classname, time, and a failure (message attribute and
// text), error, skipped or system-out child.
type ciCase struct {
	Name      string `xml:"name,attr"`
	Classname string `xml:"classname,attr"`
	Time      string `xml:"time,attr"`
	Failure   *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error   *struct{} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	SystemOut string `xml:"system-out"`
}

type ciReport struct {
	XMLName xml.Name `xml:"testsuites"`
	Suites  []struct {
		Name  string   `xml:"name,attr"`
		Tests int      `xml:"tests,attr"`
		Cases []ciCase `xml:"testcase"`
	} `xml:"testsuite"`
}

// A retried stage's failed attempt leaves its cases in result.json (with
// their attempt) but not in junit.xml or the summary; junit.xml has each
// case's time, the failure message as its text, the console before a
// failure in system-out (bounded), stages that never ran as skipped, and
// every file of the bundle is 0644.
func TestJUnitCIGrade(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	b, err := Create(dir, Result{Job: "j"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// attempt 1 of stage "boot": a case fails, then the stage is retried
	b.TestCase(builtins.TestCase{Name: "link", Result: "fail", Stage: "boot", Attempt: 1, Message: "no carrier"})
	for i := 0; i < 500; i++ {
		fmt.Fprintf(b.Console(), "boot line %d\r\n", i)
	}
	b.Console().Write([]byte("\x1b[1mmmc0: timeout\x1b[0m\r\n"))
	b.TestCase(builtins.TestCase{Name: "link", Result: "pass", Stage: "boot", Attempt: 2, DurationMS: 1250})
	b.TestCase(builtins.TestCase{Name: "mmc", Result: "fail", Stage: "boot", Attempt: 2, DurationMS: 40, Message: "mmc0 timed out"})
	b.Update(func(r *Result) {
		r.Status = "fail"
		r.Stages = []Stage{{Name: "boot", Status: "pass", Attempts: 2}, {Name: "smoke", Status: "skipped"}}
	})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	var res Result
	data, _ := os.ReadFile(filepath.Join(dir, "result.json"))
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Tests) != 3 || res.Tests[0].Attempt != 1 || res.Tests[0].Result != "fail" {
		t.Errorf("result.json tests = %+v, want all 3 with attempt 1's failure first", res.Tests)
	}
	if res.Summary["fail"] != 1 || res.Summary["pass"] != 1 || res.Summary["total"] != 2 {
		t.Errorf("summary = %v, want the last attempt's: 1 pass, 1 fail, total 2", res.Summary)
	}

	out, _ := os.ReadFile(filepath.Join(dir, "junit.xml"))
	var rep ciReport
	if err := xml.Unmarshal(out, &rep); err != nil {
		t.Fatalf("junit.xml does not parse: %v\n%s", err, out)
	}
	cases := map[string][]ciCase{}
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			cases[c.Classname+"/"+c.Name] = append(cases[c.Classname+"/"+c.Name], c)
		}
	}
	if n := len(cases["j.boot/link"]); n != 1 {
		t.Fatalf("junit.xml has %d cases j.boot/link, want 1 (the last attempt's)\n%s", n, out)
	}
	if c := cases["j.boot/link"][0]; c.Failure != nil || c.Time != "1.250" {
		t.Errorf("link = %+v, want attempt 2's pass with time 1.250", c)
	}
	mmc := cases["j.boot/mmc"]
	if len(mmc) != 1 || mmc[0].Failure == nil {
		t.Fatalf("mmc = %+v, want one failed case\n%s", mmc, out)
	}
	if f := mmc[0].Failure; f.Message != "mmc0 timed out" || f.Text != "mmc0 timed out" {
		t.Errorf("mmc failure = %+v, want message and text %q", *f, "mmc0 timed out")
	}
	if mmc[0].Time != "0.040" {
		t.Errorf("mmc time = %q, want 0.040", mmc[0].Time)
	}
	so := mmc[0].SystemOut
	if !strings.Contains(so, "boot line 499\nmmc0: timeout\n") || strings.Contains(so, "\r") || strings.Contains(so, "\x1b") {
		t.Errorf("mmc system-out = %q, want the console's last lines, clean", so)
	}
	if strings.Contains(so, "boot line 100\n") || len(so) > excerptBytes {
		t.Errorf("mmc system-out is %d bytes and reaches back to line 100; want it bounded", len(so))
	}
	if sk := cases["j.smoke/smoke"]; len(sk) != 1 || sk[0].Skipped == nil || !strings.Contains(sk[0].Skipped.Message, "did not run") {
		t.Errorf("stage smoke that never ran = %+v, want a skipped case", sk)
	}

	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && info.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", p, info.Mode().Perm())
		}
		return nil
	})
}

// GitLab keys junit cases by suite and name: a case recorded twice in one
// stage gets a numbered name instead of collapsing into the first.
func TestJUnitUniqueNames(t *testing.T) {
	r := Result{Job: "j", Stages: []Stage{{Name: "s", Attempts: 1}, {Name: "t", Attempts: 1}},
		Tests: []builtins.TestCase{{Name: "a", Result: "pass", Stage: "s", Attempt: 1}, {Name: "a", Result: "fail", Stage: "s", Attempt: 1},
			{Name: "a", Result: "pass", Stage: "s", Attempt: 1}, {Name: "a", Result: "pass", Stage: "t", Attempt: 1}}}
	out, err := JUnit(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got junitSuites
	if err := xml.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got.Suites {
		for _, c := range s.Cases {
			names = append(names, s.Name+"/"+c.Name)
		}
	}
	want := []string{"j.s/a", "j.s/a (2)", "j.s/a (3)", "j.t/a"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("JUnit(a, a, a in s; a in t) names = %q, want %q", names, want)
	}
}
