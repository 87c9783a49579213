package bundle

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
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
	out, err := JUnit(r)
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
