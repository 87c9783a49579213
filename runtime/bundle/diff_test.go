package bundle

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/basalt-lab/basalt/builtins"
)

// makeBundle writes a bundle whose stages wrote the given console text.
func makeBundle(t *testing.T, status string, stages [][2]string, tests map[string]string) *Read {
	t.Helper()
	dir := t.TempDir()
	b, err := Create(dir, Result{Job: "j"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stages {
		b.Emit("stage_start", map[string]any{"stage": st[0], "attempt": 1})
		b.Console().Write([]byte(st[1]))
		for name, res := range tests {
			b.TestCase(builtins.TestCase{Name: name, Result: res, Stage: st[0]})
		}
		tests = nil
		b.Emit("stage_end", map[string]any{"stage": st[0], "status": "pass"})
		b.Update(func(r *Result) { r.Stages = append(r.Stages, Stage{Name: st[0], Status: "pass", Attempts: 1}) })
	}
	b.Update(func(r *Result) { r.Status = status })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	rd, err := ReadForDiff(dir)
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

// Two runs whose consoles differ only in times, addresses, nonces and
// kernel timing prefixes are the same; a changed line is the first
// divergence, and a warning only one side has is listed for that side.
func TestDiffBundles(t *testing.T) {
	a := makeBundle(t, "pass", [][2]string{
		{"boot", "[    0.000000] Booting Linux\nDHCP: lease 192.0.2.10 from 192.0.2.1 at 03:18:40\nnonce f41e8a56fe98e11a\n"},
		{"smoke", "# uname\nLinux sim\n# done\n"},
	}, map[string]string{"uname": "pass"})
	same := makeBundle(t, "pass", [][2]string{
		{"boot", "[    0.100231] Booting Linux\nDHCP: lease 192.0.2.77 from 192.0.2.1 at 04:01:02\nnonce 236ef20e9ed4164d\n"},
		{"smoke", "# uname\r\nLinux sim\r\n# done\r\n"},
	}, map[string]string{"uname": "pass"})
	d, err := DiffBundles(a, same)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Same || d.FirstDivergence != nil || len(d.Hunks) != 0 {
		t.Errorf("diff of runs differing in times, addresses and nonces: same %v, divergence %+v, hunks %+v; want the same", d.Same, d.FirstDivergence, d.Hunks)
	}

	b := makeBundle(t, "fail", [][2]string{
		{"boot", "[    0.000000] Booting Linux\nDHCP: lease 192.0.2.10 from 192.0.2.1 at 03:18:40\nnonce 0123456789abcdef\n"},
		{"smoke", "# uname\nWARNING: CPU: 0 PID: 1 at kernel/foo.c:12 at 0xffff800010a1b2c4\nLinux sim-2\n# done\n"},
	}, map[string]string{"uname": "fail"})
	d, err = DiffBundles(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if d.Same {
		t.Fatal("diff of a pass and a changed fail: same, want differ")
	}
	dv := d.FirstDivergence
	if dv == nil || dv.Stage != "smoke" || dv.A == nil || dv.A.Text != "Linux sim" || dv.A.Line != 5 || dv.B == nil || !strings.HasPrefix(dv.B.Text, "WARNING: CPU: 0") || dv.B.Line != 5 {
		t.Errorf("first divergence = %+v / %+v, want smoke line 5: a %q, b the WARNING", dv, dv.B, "Linux sim")
	}
	if len(d.OnlyB) != 1 || d.OnlyB[0].Norm != "WARNING: CPU: 0 PID: 1 at kernel/foo.c:12 at 0x<HEX>" || d.OnlyB[0].Stage != "smoke" || len(d.OnlyA) != 0 {
		t.Errorf("only in a %+v, only in b %+v; want the WARNING only in b", d.OnlyA, d.OnlyB)
	}
	if len(d.Tests) != 1 || d.Tests[0] != (TestDiff{Name: "uname", A: "pass", B: "fail"}) {
		t.Errorf("tests = %+v, want uname pass → fail", d.Tests)
	}
	if len(d.Hunks) != 1 || d.Hunks[0].Stage != "smoke" {
		t.Fatalf("hunks = %+v, want one in smoke", d.Hunks)
	}
	var ops []string
	for _, l := range d.Hunks[0].Lines {
		ops = append(ops, l.Op+l.Text)
	}
	want := []string{" # uname", "-Linux sim", "+WARNING: CPU: 0 PID: 1 at kernel/foo.c:12 at 0xffff800010a1b2c4", "+Linux sim-2", " # done"}
	if fmt.Sprint(ops) != fmt.Sprint(want) {
		t.Errorf("hunk = %q, want %q", ops, want)
	}
	if len(d.Stages) != 2 || d.Stages[1].A == nil || d.Stages[1].B == nil {
		t.Errorf("stages = %+v, want boot and smoke on both sides", d.Stages)
	}
}

// A stage longer than the alignment window is aligned on its first
// DiffAlignWindow lines and compared one for one past them: the first
// divergence is still found, and a note says so.
func TestDiffBeyondWindow(t *testing.T) {
	var sa, sb strings.Builder
	for i := range DiffAlignWindow + 100 {
		fmt.Fprintf(&sa, "line %d\n", i)
		if i == DiffAlignWindow+50 {
			sb.WriteString("Kernel panic - not syncing\n")
			continue
		}
		fmt.Fprintf(&sb, "line %d\n", i)
	}
	a := makeBundle(t, "pass", [][2]string{{"soak", sa.String()}}, nil)
	b := makeBundle(t, "pass", [][2]string{{"soak", sb.String()}}, nil)
	d, err := DiffBundles(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if dv := d.FirstDivergence; dv == nil || dv.A == nil || dv.A.Line != DiffAlignWindow+51 || dv.B == nil || dv.B.Text != "Kernel panic - not syncing" {
		t.Errorf("first divergence = %+v, want line %d: the panic", dv, DiffAlignWindow+51)
	}
	if len(d.OnlyB) != 1 || len(d.Notes) == 0 || !strings.Contains(d.Notes[0], "compared one for one") {
		t.Errorf("only in b %+v, notes %q; want the panic and a note on the window", d.OnlyB, d.Notes)
	}
}

// Past DiffMaxHunks hunks, the rest are counted in a note, not kept.
func TestDiffMaxHunks(t *testing.T) {
	var sa, sb strings.Builder
	for i := range DiffMaxHunks + 5 {
		fmt.Fprintf(&sa, "same %d\nsame %d.\nsame %d..\nsame %d...\nsame %d....\nsame %d.....\nsame %d......\nthis is a %d\n", i, i, i, i, i, i, i, i)
		fmt.Fprintf(&sb, "same %d\nsame %d.\nsame %d..\nsame %d...\nsame %d....\nsame %d.....\nsame %d......\nthis is b %d\n", i, i, i, i, i, i, i, i)
	}
	d, err := DiffBundles(makeBundle(t, "pass", [][2]string{{"s", sa.String()}}, nil), makeBundle(t, "pass", [][2]string{{"s", sb.String()}}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Hunks) != DiffMaxHunks || len(d.Notes) != 1 || d.Notes[0] != "5 hunks past the first 50 are not shown" {
		t.Errorf("%d hunks, notes %q; want %d and a note on the 5 left out", len(d.Hunks), d.Notes, DiffMaxHunks)
	}
}

// A console of binary garbage diffs without harm: the lines it shows are
// valid UTF-8 without control characters.
func TestDiffBinaryConsole(t *testing.T) {
	garbage := string([]byte{0x00, 0xff, 0x1b, '[', '2', 'J', 0xc3, 0x28, '\r', 'x', '\n', 0x07, 0xfe, '\n', 'o', 'k', '\n'})
	d, err := DiffBundles(makeBundle(t, "pass", [][2]string{{"s", "ok\n"}}, nil), makeBundle(t, "pass", [][2]string{{"s", garbage}}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if d.Same || len(d.Hunks) != 1 {
		t.Fatalf("diff with a garbage console: same %v, hunks %+v; want one hunk", d.Same, d.Hunks)
	}
	for _, l := range d.Hunks[0].Lines {
		if !utf8.ValidString(l.Text) || strings.ContainsAny(l.Text, "\x00\x1b\x07\r") {
			t.Errorf("hunk line %q: invalid UTF-8 or a control character", l.Text)
		}
	}
}

// BenchmarkDiffBundles50MB diffs two 50 MB consoles of kernel lines that
// part once (the README's figure): time and bytes allocated per diff.
func BenchmarkDiffBundles50MB(b *testing.B) {
	console := func(warn bool) string {
		var sb strings.Builder
		for n := 0; sb.Len() < 50<<20; n++ {
			if warn && n == 400000 {
				sb.WriteString("[ 1997.973619] WARNING: CPU: 1 PID: 9 at net/core/dev.c:42\n")
				continue
			}
			fmt.Fprintf(&sb, "[%12.6f] eth0: rx packet %d from 192.0.2.%d at 0x%016x len %d\n", float64(n)/300, n, n%254+1, uint64(n)*0x9e3779b97f4a7c15, n%1500)
		}
		return sb.String()
	}
	x, y := makeBenchBundle(b, console(false)), makeBenchBundle(b, console(true))
	b.ReportAllocs()
	for b.Loop() {
		d, err := DiffBundles(x, y)
		if err != nil || d.FirstDivergence == nil {
			b.Fatalf("DiffBundles = %v, %v; want a divergence", d, err)
		}
	}
}

func makeBenchBundle(b *testing.B, con string) *Read {
	dir := b.TempDir()
	bd, err := Create(dir, Result{Job: "j"}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	bd.Emit("stage_start", map[string]any{"stage": "soak", "attempt": 1})
	bd.Console().Write([]byte(con))
	bd.Emit("stage_end", map[string]any{"stage": "soak", "status": "pass"})
	bd.Update(func(r *Result) { r.Status = "pass" })
	if err := bd.Close(); err != nil {
		b.Fatal(err)
	}
	rd, err := ReadForDiff(dir)
	if err != nil {
		b.Fatal(err)
	}
	return rd
}
