package report

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// summary is "name=result" per case and "line N: reason" per problem.
func summary(cases []Case, problems []Problem) []string {
	var out []string
	for _, c := range cases {
		s := c.Name + "=" + c.Result
		if c.Measurement != nil {
			s += fmt.Sprintf(" %g%s", *c.Measurement, c.Units)
		}
		out = append(out, s)
	}
	for _, p := range problems {
		out = append(out, fmt.Sprintf("line %d: %s", p.Line, p.Reason))
	}
	return out
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTAP(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"TAP version 14\n1..2\nok 1 - a\nnot ok 2 - b\n", []string{"a=pass", "b=fail"}},
		{"1..3\nok\nok 2 # SKIP later\nnot ok 3 flaky # TODO fix it\n", []string{"test 1=pass", "test 2=skip", "flaky=skip"}},
		{"ok 1 - a \\# b\n", []string{"a # b=pass"}},
		{"1..3\nok 1 - a\n", []string{"a=pass", "line 1: planned 3 tests, got 1"}},
		{"ok 1 - a\nok 3 - c\n", []string{"a=pass", "c=pass", "line 2: test number 3, want 2"}},
		// TAP 14 subtests: the indented block belongs to the next result line.
		{"TAP version 14\n1..1\n# Subtest: suite\n    1..2\n    ok 1 - x\n    not ok 2 - y\nnot ok 1 - suite\n", []string{"suite.x=pass", "suite.y=fail"}},
		{"ok 1 - a\ngarbage\n", []string{"a=pass", "line 2: not TAP"}},
		{"    ok 1 - orphan\n", []string{"orphan=pass", "line 1: subtest result with no parent result line"}},
		{"", nil},
	} {
		got := summary(TAP(tc.in))
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("TAP(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTAPBroken(t *testing.T) {
	cases, problems := TAP(read(t, "broken.tap"))
	want := []string{"first=pass", "second=fail", "fourth=skip",
		"line 4: not TAP", "line 10: test number 4, want 3", "line 11: bail out", "line 2: planned 4 tests, got 3"}
	if d := cmp.Diff(want, summary(cases, problems)); d != "" {
		t.Errorf("TAP(broken.tap) (-want +got):\n%s", d)
	}
	if !strings.Contains(cases[1].Message, "wanted 3, got 4") {
		t.Errorf("second's message = %q, want the YAML block", cases[1].Message)
	}
}

func TestKTAP(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"nested.ktap", []string{"mem_pool.alloc_small=pass", "mem_pool.alloc_huge=fail", "mem_pool.alloc_zero=skip",
			"fs_suite.parser.parse_empty=pass", "fs_suite.parser.parse_long=fail", "fs_suite.writer=pass"}},
		{"stamped.ktap", []string{"clock_math.ns_to_ms=pass", "clock_math.ms_overflow=pass"}},
	} {
		cases, problems := KTAP(read(t, tc.file))
		if d := cmp.Diff(tc.want, summary(cases, problems)); d != "" {
			t.Errorf("KTAP(%s) (-want +got):\n%s", tc.file, d)
		}
	}
	// Unknown lines are allowed in KTAP; a wrong number is still a problem.
	got := summary(KTAP("KTAP version 1\n1..2\nkernel noise\nok 1 a\nok 3 b\n"))
	want := []string{"a=pass", "b=pass", "line 5: test number 3, want 2"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("KTAP(noise) = %q, want %q", got, want)
	}
}

func TestLAVA(t *testing.T) {
	got := summary(LAVA(read(t, "lava.txt")))
	want := []string{"boot-time=pass 6.2s", "boot-time=pass 6.2s", "net up=fail",
		`line 5: lava-test-case: result "maybe", want pass, fail, skip or unknown`,
		"line 6: lava-test-case: missing test case name"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("LAVA(lava.txt) (-want +got):\n%s", d)
	}
}

// TAP from a real producer: perl's prove running a .t file written with
// Test::More, verbose (-v) so every result line is printed.
func TestTAPFromProve(t *testing.T) {
	prove, err := exec.LookPath("prove")
	if err != nil {
		t.Skip("prove (perl) not installed")
	}
	dir := t.TempDir()
	src := `use Test::More tests => 4;
ok(1, 'addition works');
ok(0, 'subtraction is broken');
SKIP: { skip 'no network here', 1; ok(1, 'fetch'); }
subtest 'nested' => sub { plan tests => 2; ok(1, 'inner one'); ok(1, 'inner two'); };
`
	if err := os.WriteFile(filepath.Join(dir, "x.t"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prove, "-v", "x.t")
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput() // exit 1: a test failed, on purpose
	// prove prefixes the TAP with "x.t .. " and ends with its summary;
	// those lines are not TAP and come back as problems.
	cases, problems := TAP(string(out))
	got := summary(cases, nil)
	want := []string{"addition works=pass", "subtraction is broken=fail", "test 3=skip", "nested.inner one=pass", "nested.inner two=pass"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("TAP(prove -v output) (-want +got):\n%s\noutput:\n%s", d, out)
	}
	if len(problems) == 0 {
		t.Errorf("TAP(prove -v output): no problems, want prove's own lines reported")
	}
	if os.Getenv("BASALT_UPDATE_PROVE") != "" {
		os.WriteFile("testdata/prove.tap", out, 0o644)
	}
}

func FuzzParseTAP(f *testing.F)  { fuzz(f, TAP, "broken.tap", "prove.tap") }
func FuzzParseKTAP(f *testing.F) { fuzz(f, KTAP, "nested.ktap", "stamped.ktap") }
func FuzzParseLAVA(f *testing.F) { fuzz(f, LAVA, "lava.txt") }

// fuzz checks what every parser promises: no panic, every case named with
// a known result, every problem on a line of the input.
func fuzz(f *testing.F, parse func(string) ([]Case, []Problem), seeds ...string) {
	for _, s := range seeds {
		if b, err := os.ReadFile(filepath.Join("testdata", s)); err == nil {
			f.Add(string(b))
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		cases, problems := parse(in)
		lines := strings.Count(in, "\n") + 1
		for _, c := range cases {
			if c.Name == "" || !lavaResults[c.Result] {
				t.Errorf("case %+v: want a name and one of pass, fail, skip, unknown", c)
			}
			if c.Line < 1 || c.Line > lines {
				t.Errorf("case %+v: line out of the input's %d", c, lines)
			}
		}
		for _, p := range problems {
			if p.Line < 0 || p.Line > lines {
				t.Errorf("problem %+v: line out of the input's %d", p, lines)
			}
		}
	})
}
