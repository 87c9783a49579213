package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EQemuReplay records jobs/qemu-master.star on the qemu lab (a real
// kernel PXE-booted by iPXE behind basalt's BMC, as TestE2EQemuMaster) and
// replays the bundle without the VM, its network or its BMC: the same job
// passes with the same console, and an edited one whose test no longer
// holds exits 1 without a divergence.
func TestE2EQemuReplay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	q := newQemuLab(t, ctx, "basalt-e2e-replay")
	out := filepath.Join(q.dir, "out")
	run := q.ns.Command(ctx, q.bin, "run", filepath.Join(q.jobDir, "qemu-master.star"), "--lab", q.labDir, "--device", "qemu01", "--out", out)
	t0 := time.Now()
	output, err := run.CombinedOutput()
	t.Logf("basalt run took %s:\n%s", time.Since(t0).Round(time.Second), output)
	if err != nil {
		con, _ := os.ReadFile(filepath.Join(out, "console.log"))
		t.Fatalf("basalt run: %v\nconsole.log (last 6 KiB):\n%s", err, tail(con, 6<<10))
	}

	// Outside the lab's namespace: nothing of the lab is reachable.
	replay := func(dir string, args ...string) (int, string) {
		cmd := exec.CommandContext(ctx, q.bin, append([]string{"replay", out, "--out", dir}, args...)...)
		cmd.Dir = q.dir
		output, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(output)
		}
		must(t, err)
		return 0, string(output)
	}
	same := filepath.Join(q.dir, "replay")
	code, output2 := replay(same)
	if code != 0 || !strings.Contains(output2, "replay: the job made the recorded calls and its expects matched") {
		t.Fatalf("replay of the qemu bundle exit %d, want 0 and the match:\n%s", code, output2)
	}
	want, _ := os.ReadFile(filepath.Join(out, "console.log"))
	got, _ := os.ReadFile(filepath.Join(same, "console.log"))
	if !bytes.Equal(got, want) {
		t.Errorf("the replay's console.log (%d bytes) differs from the recorded one (%d bytes)", len(got), len(want))
	}
	if g, w := testResults(t, same), testResults(t, out); g != w {
		t.Errorf("replay tests = %s, want the recorded %s", g, w)
	}

	src, err := os.ReadFile(filepath.Join(q.jobDir, "qemu-master.star"))
	must(t, err)
	edited := strings.Replace(string(src), `"Linux" in target.run("uname -a")`, `"FreeBSD" in target.run("uname -a")`, 1)
	if edited == string(src) {
		t.Fatal("qemu-master.star has no uname test to edit")
	}
	must(t, os.WriteFile(filepath.Join(q.jobDir, "edited.star"), []byte(edited), 0o644))
	code, output2 = replay(filepath.Join(q.dir, "edited"), filepath.Join(q.jobDir, "edited.star"))
	if code != 1 || strings.Contains(output2, "divergence") || !strings.Contains(output2, "fail: uname (stage smoke)") {
		t.Errorf("replay of the edited job exit %d, want 1 (the uname test fails) and no divergence:\n%s", code, output2)
	}
}
