package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func kcidbSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile(filepath.Join("testdata", "kcidb-v5-tests.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const exportJob = `job(name = "export me", device_type = "sim", timeout = "2m")

def boot(ctx):
    pxe.serve("vmlinuz", "initrd.gz", append = "nosplash break")
    ipmi.bootdev("pxe")
    ipmi.power("on")
    sol.expect("(sim-initramfs) ", timeout = "30s")
    test.case("booted", "pass")
    test.case("link speed", "pass", measurement = 940.5, units = "Mb/s")
    test.case("feature.x", "fail", message = "the feature broke")
    test.case("optional", "skip")
    test.case("booted", "pass")

def off(ctx):
    ipmi.power("off")

stage("boot", boot)
cleanup(off)
`

// A sim run's bundle exported as KCIDB v5 keeps the rules of kcidb-io's
// published v5 schema.
func TestExportKCIDB(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("BASALT_LOCK_DIR", filepath.Join(dir, "locks"))
	for name, body := range map[string]string{"job.star": exportJob, "vmlinuz": "k", "initrd.gz": "i"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), context.Background(), []string{"run", filepath.Join(dir, "job.star"), "--device", "sim", "--out", out}, nil, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("run = exit %d, want 1\n%s%s", code, &stdout, &stderr)
	}
	stdout.Reset()
	code = run(context.Background(), context.Background(), []string{"export", "kcidb", out, "--origin", "basalt_lab", "--build-id", "kernelci:build-42"}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("export kcidb = exit %d, want 0\n%s", code, &stderr)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(stdout.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := kcidbSchema(t).Validate(doc); err != nil {
		t.Fatalf("export kcidb: not KCIDB v5: %v\n%s", err, &stdout)
	}
	var rep kcidbReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	want := []struct{ path, status string }{
		{"export_me", "FAIL"},
		{"export_me.boot.booted", "PASS"},
		{"export_me.boot.link_speed", "PASS"},
		{"export_me.boot.feature_x", "FAIL"},
		{"export_me.boot.optional", "SKIP"},
		{"export_me.boot.booted_2", "PASS"},
	}
	if len(rep.Tests) != len(want) {
		t.Fatalf("export kcidb: %d tests, want %d\n%s", len(rep.Tests), len(want), &stdout)
	}
	ids := map[string]bool{}
	for i, w := range want {
		got := rep.Tests[i]
		if got.Path != w.path || got.Status != w.status {
			t.Errorf("tests[%d] = %s %s, want %s %s", i, got.Path, got.Status, w.path, w.status)
		}
		if ids[got.ID] {
			t.Errorf("tests[%d].id = %s, used twice", i, got.ID)
		}
		ids[got.ID] = true
	}
	if n := rep.Tests[2].Number; n == nil || n.Value != 940.5 || n.Unit != "Mb/s" {
		t.Errorf("link speed number = %+v, want 940.5 Mb/s", n)
	}
	if !bytes.Contains(stdout.Bytes(), []byte(`"value": 940.5`)) {
		t.Errorf("the measurement is not a JSON number:\n%s", &stdout)
	}
	if ex := rep.Tests[3].LogExcerpt; !strings.Contains(ex, "(sim-initramfs)") {
		t.Errorf("failed test's log_excerpt = %q, want the console's end", ex)
	}
	if rep.Tests[1].LogExcerpt != "" {
		t.Errorf("passed test has a log_excerpt")
	}
}

// The schema file is not vacuous: it rejects what KCIDB v5 rejects.
func TestKCIDBSchemaRejects(t *testing.T) {
	s := kcidbSchema(t)
	good := func() map[string]any {
		return map[string]any{"version": map[string]any{"major": 5, "minor": 0}, "tests": []any{map[string]any{
			"id": "o:1", "origin": "o", "build_id": "k:b", "path": "a.b", "status": "PASS",
			"number": map[string]any{"value": 1.5}, "log_excerpt": "x"}}}
	}
	if err := s.Validate(good()); err != nil {
		t.Fatalf("Validate(good) = %v, want nil", err)
	}
	cases := []struct {
		name string
		edit func(tc map[string]any, doc map[string]any)
	}{
		{"origin with upper case", func(tc, _ map[string]any) { tc["origin"] = "Lab" }},
		{"id without origin", func(tc, _ map[string]any) { tc["id"] = "1" }},
		{"no build_id", func(tc, _ map[string]any) { delete(tc, "build_id") }},
		{"unknown status", func(tc, _ map[string]any) { tc["status"] = "BROKEN" }},
		{"empty path part", func(tc, _ map[string]any) { tc["path"] = "a..b" }},
		{"space in path", func(tc, _ map[string]any) { tc["path"] = "a b" }},
		{"number as string", func(tc, _ map[string]any) { tc["number"] = map[string]any{"value": "1.5"} }},
		{"long log excerpt", func(tc, _ map[string]any) { tc["log_excerpt"] = strings.Repeat("é", 16385) }},
		{"unknown key", func(tc, _ map[string]any) { tc["device"] = "x" }},
		{"version 4", func(_, doc map[string]any) { doc["version"] = map[string]any{"major": 4} }},
	}
	for _, c := range cases {
		doc := good()
		c.edit(doc["tests"].([]any)[0].(map[string]any), doc)
		if err := s.Validate(doc); err == nil {
			t.Errorf("Validate(%s) = nil, want an error", c.name)
		}
	}
}

func TestExportKCIDBBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{dir, "--origin", "My-Lab", "--build-id", "k:1"}, `--origin "My-Lab"`},
		{[]string{dir, "--origin", "lab", "--build-id", "1234"}, `--build-id "1234": a KCIDB id starts with the origin`},
		{[]string{dir, "--origin", "lab", "--build-id", "k:1"}, "no result.json"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), context.Background(), append([]string{"export", "kcidb"}, c.args...), nil, &stdout, &stderr)
		if code != 64 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("export kcidb %q = exit %d, %q, want 64 naming %q", c.args, code, stderr.String(), c.want)
		}
	}
}

// The excerpt is the console's end, at most 16 KiB, valid UTF-8.
func TestLogExcerpt(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	var b bytes.Buffer
	for i := 0; b.Len() < 40000; i++ {
		b.WriteString("line é\xff\xfe with bytes\n")
	}
	b.WriteString("the last line\n")
	os.WriteFile(p, b.Bytes(), 0o644)
	got := logExcerpt(p)
	if n := len(got); n > 16384 || n < 16000 {
		t.Errorf("logExcerpt(40 kB) = %d bytes, want ≤ 16384 and near it", n)
	}
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "the last line\n") || !strings.HasPrefix(got, "line ") {
		t.Errorf("logExcerpt = %.40q...%q, want whole lines of valid UTF-8 ending with the last", got, got[len(got)-20:])
	}
}
