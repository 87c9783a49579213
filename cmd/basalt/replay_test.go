package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// replayedJob exercises what a replay answers from the record: PXE, IPMI
// and power calls with results, a secret line, an expect that times out
// (timeout_ok), a target.run interrupted at its timeout, and state across
// stages.
const replayedJob = `job(name = "replayed", device_type = "sim", timeout = "2m",
    params = {"kernel": "vmlinuz", "initrd": "initrd.gz"})

def boot(ctx):
    s = pxe.serve(ctx.params.kernel, ctx.params.initrd, append = "nosplash break")
    ipmi.bootdev("pxe")
    power.on()
    sol.expect("(sim-initramfs) ", timeout = "30s")
    pxe.wait_fetch(ctx.params.initrd, timeout = "30s")
    sol.mode("shell")
    ctx.state["nonce"] = s.nonce

def check(ctx):
    test.case("power", power.status() == "on")
    test.case("ipmi-power", ipmi.power_status() == "on")
    test.case("nonce", ctx.state["nonce"] in target.run("cat /proc/cmdline").output)
    sol.sendline("echo hidden", secret = True)
    sol.expect("(sim-initramfs) ")
    test.case("quiet", sol.expect("never printed", timeout = "1s", timeout_ok = True) == None)
    r = try_call(target.run, "sleep 100", timeout = "1s")
    test.case("interrupted", not r.ok)
    test.case("after", "ok" in target.run("echo ok").output)

def off(ctx):
    power.off()

stage("boot", boot)
stage("check", check)
cleanup(off)
`

// recordReplayed runs replayedJob on the sim and returns its directory
// (job, kernel, initrd) and bundle.
func recordReplayed(t *testing.T) (dir, rec string) {
	t.Helper()
	dir = t.TempDir()
	writeFiles(t, dir, map[string]string{"replayed.star": replayedJob, "vmlinuz": "a kernel", "initrd.gz": "an initrd"})
	rec = filepath.Join(dir, "rec")
	if code, out := runBundle(t, "run", filepath.Join(dir, "replayed.star"), "--device", "sim", "--out", rec); code != 0 {
		t.Fatalf("run replayed.star exit %d, want 0\n%s", code, out)
	}
	return dir, rec
}

// basalt replay of bundles recorded from the sim: the same job replays to
// the same verdict, with the same console, without a device.
func TestReplaySim(t *testing.T) {
	pass, fail := simBundles(t)
	_, rec := recordReplayed(t)
	for _, tc := range []struct {
		name, bundle string
		code         int
	}{
		{"highbank-deploy", pass, 0},
		{"fails", fail, 4},
		{"replayed", rec, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "replay")
			code, output := runBundle(t, "replay", tc.bundle, "--out", out)
			if code != tc.code || strings.Contains(output, "divergence") {
				t.Fatalf("replay %s exit %d, want %d and no divergence\n%s", tc.name, code, tc.code, output)
			}
			if tc.code == 0 && !strings.Contains(output, "replay: the job made the recorded calls and its expects matched") {
				t.Errorf("replay %s does not say it matched the recording:\n%s", tc.name, output)
			}
			want, _ := os.ReadFile(filepath.Join(tc.bundle, "console.log"))
			got, _ := os.ReadFile(filepath.Join(out, "console.log"))
			if !bytes.Equal(got, want) {
				t.Errorf("replay %s console.log differs from the recorded one:\n got %d bytes\nwant %d bytes", tc.name, len(got), len(want))
			}
			if g, w := testResults(t, out), testResults(t, tc.bundle); g != w {
				t.Errorf("replay %s tests = %s, want the recorded %s", tc.name, g, w)
			}
			// The line typed with secret=True is in neither bundle.
			for _, dir := range []string{tc.bundle, out} {
				for _, f := range []string{"events.jsonl", "console.log", "result.json"} {
					if data, _ := os.ReadFile(filepath.Join(dir, f)); strings.Contains(string(data), "echo hidden") {
						t.Errorf("%s/%s holds the secret line", dir, f)
					}
				}
			}
		})
	}
}

func testResults(t *testing.T, dir string) string {
	t.Helper()
	var r struct {
		Status string
		Tests  []struct{ Name, Result string }
	}
	data, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(r.Status)
	for _, tc := range r.Tests {
		b.WriteString(" " + tc.Name + "=" + tc.Result)
	}
	return b.String()
}

// An edited job replays against the recording: what still matches passes,
// a test that now fails exits 1, and the first divergence is named with
// the call, its file:line, what the recording did and what the job did.
func TestReplayEdited(t *testing.T) {
	dir, rec := recordReplayed(t)
	lineOf := func(src, sub string) string {
		for i, l := range strings.Split(src, "\n") {
			if strings.Contains(l, sub) {
				return regexp.QuoteMeta(filepath.Join(dir, "edited.star")) + ":" + strconv.Itoa(i+1) + ":"
			}
		}
		t.Fatalf("no line with %q", sub)
		return ""
	}
	for _, tc := range []struct {
		name, old, new string
		code           int
		// div is a regexp on the divergence line; "" for none.
		div func(src string) string
	}{
		{"regexp still matches", `sol.expect("(sim-initramfs) ", timeout = "30s")`, `sol.expect(sol.regex("\\(sim-[a-z]+\\) "), timeout = "30s")`, 0, nil},
		{"test now fails", `power.status() == "on"`, `power.status() == "off"`, 1, nil},
		{"expect no longer matches", `sol.expect("(sim-initramfs) ", timeout = "30s")`, `sol.expect("(busybox) ", timeout = "30s")`, 4,
			func(src string) string {
				return `sol.expect at ` + lineOf(src, `"(busybox) "`) + `.*expected a match in the recorded console before .*; got no match for "\(busybox\) "`
			}},
		{"expect fails where the recording's next one timed out", "sol.expect(\"(sim-initramfs) \")\n    test.case(\"quiet\"", "sol.expect(\"(busybox) \")\n    test.case(\"quiet\"", 4,
			func(src string) string {
				return `sol.expect at ` + lineOf(src, `"(busybox) "`) + `.*expected a match before the recorded expect for "never printed" timed out \(through console.log byte \d+, \+[0-9.]+s, stage check\); got no match for "\(busybox\) "`
			}},
		{"typed command differs", `target.run("echo ok")`, `target.run("echo okay")`, 2,
			func(src string) string {
				return `target.run at ` + lineOf(src, `echo okay`) + `.*expected typing .*eval 'echo ok'.*; got typing .*eval 'echo okay'`
			}},
		{"other boot device", `ipmi.bootdev("pxe")`, `ipmi.bootdev("disk")`, 2,
			func(src string) string {
				return `ipmi.bootdev at ` + lineOf(src, `bootdev("disk")`) + `.*expected ipmi.bootdev\("pxe"\); got ipmi.bootdev\("disk"\)`
			}},
		{"secret typed in the clear", `"echo hidden", secret = True`, `"echo hidden"`, 2,
			func(src string) string {
				return `sol.sendline at ` + lineOf(src, `"echo hidden"`) + `.*expected a secret send; got typing "echo hidden\\n"`
			}},
		{"last call of the stages left out", `    test.case("after", "ok" in target.run("echo ok").output)` + "\n", "", 1,
			func(src string) string {
				return `the end of stage check: expected the recorded call target.run at .*replayed.star:\d+:\d+; got no such call before cleanup off`
			}},
		{"call left out", `    test.case("ipmi-power", ipmi.power_status() == "on")` + "\n", "", 1,
			func(src string) string {
				return `target.run at ` + lineOf(src, `cat /proc/cmdline`) + `.*expected ipmi.power_status\(\) \(recorded at .*replayed.star:\d+:\d+\); got target.run\("cat /proc/cmdline"\)`
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(replayedJob, tc.old) {
				t.Fatalf("the job has no %q", tc.old)
			}
			src := strings.Replace(replayedJob, tc.old, tc.new, 1)
			writeFiles(t, dir, map[string]string{"edited.star": src})
			code, out := runBundle(t, "replay", rec, filepath.Join(dir, "edited.star"), "--out", filepath.Join(t.TempDir(), "r"))
			if code != tc.code {
				t.Errorf("replay exit %d, want %d\n%s", code, tc.code, out)
			}
			if tc.div == nil {
				if strings.Contains(out, "divergence") {
					t.Errorf("replay reports a divergence, want none:\n%s", out)
				}
				return
			}
			re := regexp.MustCompile(`(?m)^basalt: replay of .*: first divergence: ` + tc.div(src))
			if !re.MatchString(out) {
				t.Errorf("replay output lacks the divergence %s:\n%s", re, out)
			}
		})
	}
}

// A bundle cut short or edited so that it cannot be followed is refused
// with what is missing named (exit 2); another schema version names both;
// no bundle at all is a usage error.
func TestReplayBadBundle(t *testing.T) {
	_, rec := recordReplayed(t)
	events, _ := os.ReadFile(filepath.Join(rec, "events.jsonl"))
	console, _ := os.ReadFile(filepath.Join(rec, "console.log"))
	lines := strings.SplitAfter(string(events), "\n")
	// Cut inside the job_end line: the events after it (the BMC's lab
	// context) go too.
	jobEnd := strings.Index(string(events), `"type":"job_end"`)
	jobEnd = strings.LastIndex(string(events[:jobEnd]), "\n") + 1
	jobEndLine := strings.Count(string(events[:jobEnd]), "\n") + 1
	sendLine := 0
	for i, l := range lines {
		if strings.Contains(l, `"type":"send"`) && strings.Contains(l, `"text":`) {
			sendLine = i
			break
		}
	}
	for _, tc := range []struct {
		name  string
		edit  func(dir string)
		code  int
		wants []string
	}{
		{"events cut short", func(d string) { write(t, d, "events.jsonl", events[:jobEnd+20]) }, 2,
			[]string{"events.jsonl: line " + strconv.Itoa(jobEndLine) + " is cut short (the file is truncated)", "events.jsonl: no job_end event"}},
		{"events line edited", func(d string) {
			l := append([]string(nil), lines...)
			l[3] = "{not json\n"
			write(t, d, "events.jsonl", []byte(strings.Join(l, "")))
		}, 2, []string{"events.jsonl: line 4 is not a JSON object"}},
		{"send text removed", func(d string) {
			l := append([]string(nil), lines...)
			l[sendLine] = regexp.MustCompile(`"text":"(\\.|[^"\\])*",`).ReplaceAllString(l[sendLine], "")
			write(t, d, "events.jsonl", []byte(strings.Join(l, "")))
		}, 2, []string{"events.jsonl: line " + strconv.Itoa(sendLine+1) + ": send event without its text"}},
		{"console cut short", func(d string) { write(t, d, "console.log", console[:len(console)/2]) }, 2,
			[]string{"console.log: " + strconv.Itoa(len(console)/2) + " bytes, but events.jsonl says"}},
		{"files missing", func(d string) {
			os.Remove(filepath.Join(d, "console.log"))
			os.Remove(filepath.Join(d, "events.jsonl"))
		}, 2, []string{"console.log: missing", "events.jsonl: missing"}},
		{"other schema", func(d string) {
			data, _ := os.ReadFile(filepath.Join(d, "result.json"))
			write(t, d, "result.json", bytes.Replace(data, []byte(`"schema_version": 1`), []byte(`"schema_version": 2`), 1))
		}, 2, []string{"result.json is schema version 2; this basalt reads schema version 1"}},
		{"no result.json", func(d string) { os.Remove(filepath.Join(d, "result.json")) }, 64,
			[]string{"holds no result bundle (no result.json)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := copyBundle(t, rec)
			tc.edit(d)
			code, out := runBundle(t, "replay", d, "--out", filepath.Join(t.TempDir(), "r"))
			if code != tc.code {
				t.Errorf("replay exit %d, want %d\n%s", code, tc.code, out)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out, w) {
					t.Errorf("replay output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func write(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Every example job that runs on the sim replays to its own verdict, with
// its console: U-Boot's verified lines (their echo precedes their send
// event), kexec, a fetched disk image, an A/B upgrade, a health check's
// device facts.
func TestReplayExampleJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five jobs on the sim")
	}
	t.Setenv("BASALT_LOCK_DIR", filepath.Join(t.TempDir(), "locks"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(t.TempDir(), "cache"))
	jobs, _ := filepath.Abs(filepath.Join("..", "..", "jobs"))
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"health-check", []string{"health-check.star", "--device", "sim", "--param", "disk=/dev/sdz"}, 1},
		{"kexec", []string{"kexec.star", "--device", "sim"}, 0},
		{"save-node", []string{"save-node.star", "--device", "sim"}, 0},
		{"uboot-netboot", []string{"uboot-netboot.star", "--device", filepath.Join(jobs, "lab", "devices", "simuboot01.star")}, 0},
		{"ab-upgrade", []string{"ab-upgrade.star", "--device", "sim"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rec, rp := filepath.Join(dir, "rec"), filepath.Join(dir, "replay")
			args := append([]string{"run", filepath.Join(jobs, tc.args[0])}, tc.args[1:]...)
			if code, out := runBundle(t, append(args, "--out", rec)...); code != tc.code {
				t.Fatalf("run %s exit %d, want %d\n%s", tc.name, code, tc.code, out)
			}
			code, out := runBundle(t, "replay", rec, "--out", rp)
			if code != tc.code || strings.Contains(out, "divergence") {
				t.Fatalf("replay %s exit %d, want %d and no divergence\n%s", tc.name, code, tc.code, out)
			}
			want, _ := os.ReadFile(filepath.Join(rec, "console.log"))
			got, _ := os.ReadFile(filepath.Join(rp, "console.log"))
			if !bytes.Equal(got, want) {
				t.Errorf("replay %s console.log (%d bytes) differs from the recorded one (%d bytes)", tc.name, len(got), len(want))
			}
			if g, w := testResults(t, rp), testResults(t, rec); g != w {
				t.Errorf("replay %s tests = %s, want the recorded %s", tc.name, g, w)
			}
		})
	}
}
