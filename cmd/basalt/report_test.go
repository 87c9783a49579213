package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// failingReportJob passes a test, fails one, then fails on an expect timeout in
// a function the stage calls, so the backtrace has two frames.
const failingReportJob = `job(name = "fails", device_type = "sim", timeout = "2m",
    params = {"kernel": "vmlinuz", "initrd": "initrd.gz"})

def boot(ctx):
    pxe.serve(ctx.params.kernel, ctx.params.initrd)
    ipmi.bootdev("pxe")
    ipmi.power("on")
    sol.expect("(sim-initramfs) ", timeout = "30s")
    sol.mode("shell")

def wait_watchdog():
    sol.expect("watchdog ready", timeout = "2s")

def check(ctx):
    test.case("mem-size", "pass", measurement = 512, units = "MiB")
    test.case("disk-present", target.run("ls /dev/nosuchdisk", check = False).exit_code == 0, message = "no /dev/nosuchdisk")
    target.run("echo checking the watchdog")
    wait_watchdog()

def off(ctx):
    ipmi.power("off")

stage("boot", boot)
stage("check", check)
cleanup(off)
`

// writeFiles writes name → content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, src := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runBundle runs basalt with args and returns its exit code and output.
func runBundle(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), context.Background(), args, nil, &stdout, &stderr)
	return code, stdout.String() + stderr.String()
}

// simBundles runs a passing job (jobs/highbank-deploy.star) and the
// failing one on the sim device and returns their bundles.
func simBundles(t *testing.T) (pass, fail string) {
	t.Helper()
	t.Setenv("BASALT_LOCK_DIR", filepath.Join(t.TempDir(), "locks"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(t.TempDir(), "cache"))
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"fails.star": failingReportJob, "vmlinuz": "a kernel", "initrd.gz": "an initrd"})
	pass, fail = filepath.Join(dir, "pass"), filepath.Join(dir, "fail")
	job, _ := filepath.Abs(filepath.Join("..", "..", "jobs", "highbank-deploy.star"))
	if code, out := runBundle(t, "run", job, "--device", "sim", "--out", pass); code != 0 {
		t.Fatalf("run highbank-deploy.star exit %d, want 0\n%s", code, out)
	}
	if code, out := runBundle(t, "run", filepath.Join(dir, "fails.star"), "--device", "sim", "--out", fail); code != 4 {
		t.Fatalf("run fails.star exit %d, want 4 (the expect times out)\n%s", code, out)
	}
	return pass, fail
}

// reportDOM is what the test reads of a report in the browser.
type reportDOM struct {
	Status       string   `json:"status"`
	Stages       []string `json:"stages"`
	Lanes        []string `json:"lanes"`
	Marks        int      `json:"marks"`
	FailedTests  []string `json:"failedTests"`
	Measurements []string `json:"measurements"`
	Error        string   `json:"error"`
	Backtrace    string   `json:"backtrace"`
	FailureLines []string `json:"failureLines"`
	Console      []string `json:"console"`
	Untimed      int      `json:"untimed"`
	StageMarks   []string `json:"stageMarks"`
	// The comparison with a --baseline bundle.
	Baseline           string   `json:"baseline"`
	BaselineDivergence []string `json:"baselineDivergence"`
	BaselineOnly       []string `json:"baselineOnly"`
	BaselineStages     []string `json:"baselineStages"`
}

const readDOM = `(() => {
  const all = (sel, f) => Array.from(document.querySelectorAll(sel)).map(f);
  const text = sel => { const e = document.querySelector(sel); return e ? e.textContent : ""; };
  return {
    status: text("#status"),
    stages: all("#stages .stage", e => e.dataset.stage),
    lanes: all("#timeline .lane", e => e.dataset.lane),
    marks: document.querySelectorAll("#timeline .mk").length,
    failedTests: all("#tests tr.fail .name", e => e.textContent),
    measurements: all("#tests tr.test td:nth-child(4)", e => e.textContent),
    error: text("#error-message"),
    backtrace: text("#backtrace"),
    failureLines: all("#failure-console .line .x", e => e.textContent),
    console: all("#console .line .x", e => e.textContent),
    untimed: all("#console .line .t", e => e.textContent).filter(t => !t.startsWith("+")).length,
    stageMarks: all("#console .stage-mark", e => e.dataset.stage),
    baseline: text("#baseline .verdict"),
    baselineDivergence: all("#baseline-divergence .x", e => e.textContent),
    baselineOnly: all("#baseline-only tr.only-b .x", e => e.textContent),
    baselineStages: all("#baseline-stages tr.stage-row", e => e.dataset.stage),
  };
})()`

// The report of a passing and of a failing sim run, loaded in headless
// Chromium from file://, shows the stages on the timeline with the
// protocol events, the tests with results and measurements, the failure
// with its error, backtrace and console context, and the console with a
// time on every line; it loads nothing from the network. Screenshots go to
// the test's artifact directory (go test -artifacts keeps them).
func TestReportInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (Debian package chromium; CI installs it)")
	}
	pass, fail := simBundles(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.WindowSize(1400, 1000), chromedp.Flag("disable-dev-shm-usage", true))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(ctx)
	defer cancelTab()
	var mu sync.Mutex
	var requests []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if r, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requests = append(requests, r.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}

	load := func(name, dir string) reportDOM {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate("file://"+filepath.Join(dir, "report.html")), chromedp.WaitReady("#console")); err != nil {
			t.Fatalf("load %s report: %v", name, err)
		}
		dom, err := chromedp.Run(ctx, chromedp.Evaluate[reportDOM](readDOM))
		if err != nil {
			t.Fatalf("read the %s report's DOM: %v", name, err)
		}
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(80))
		if err != nil {
			t.Fatalf("screenshot the %s report: %v", name, err)
		}
		p := filepath.Join(t.ArtifactDir(), name+"-report.jpg")
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the %s report: %s", name, p)
		return dom
	}

	got := load("pass", pass)
	if got.Status != "pass" {
		t.Errorf("pass report #status = %q, want pass", got.Status)
	}
	if want := []string{"deploy", "boot", "smoke", "power_off"}; !slices.Equal(got.Stages, want) {
		t.Errorf("pass report stages = %q, want %q", got.Stages, want)
	}
	for _, lane := range []string{"builtins", "ipmi", "tftp", "http", "console", "tests"} {
		if !slices.Contains(got.Lanes, lane) {
			t.Errorf("pass report timeline lanes = %q, want %s among them", got.Lanes, lane)
		}
	}
	if len(got.FailedTests) != 0 || got.Error != "" {
		t.Errorf("pass report failed tests %q, error %q, want none", got.FailedTests, got.Error)
	}
	if !slices.ContainsFunc(got.Console, func(l string) bool { return strings.Contains(l, "Linux version") }) {
		t.Errorf("pass report console has no Linux version line: %q", got.Console[:min(10, len(got.Console))])
	}
	if got.Untimed != 0 || len(got.Console) == 0 {
		t.Errorf("pass report: %d of %d console lines have no time, want all timed", got.Untimed, len(got.Console))
	}
	for _, st := range []string{"deploy", "boot", "smoke"} {
		if !slices.Contains(got.StageMarks, st) {
			t.Errorf("pass report console stage markers = %q, want %s", got.StageMarks, st)
		}
	}

	got = load("fail", fail)
	if got.Status != "error" {
		t.Errorf("fail report #status = %q, want error", got.Status)
	}
	if want := []string{"boot", "check", "off"}; !slices.Equal(got.Stages, want) {
		t.Errorf("fail report stages = %q, want %q", got.Stages, want)
	}
	if !slices.Equal(got.FailedTests, []string{"disk-present"}) {
		t.Errorf("fail report failed tests = %q, want [disk-present]", got.FailedTests)
	}
	if !slices.Contains(got.Measurements, "512 MiB") {
		t.Errorf("fail report measurements = %q, want 512 MiB", got.Measurements)
	}
	if !strings.Contains(got.Error, `sol.expect: no match for "watchdog ready"`) {
		t.Errorf("fail report error = %q, want the expect timeout", got.Error)
	}
	if !strings.Contains(got.Backtrace, "in wait_watchdog") || !strings.Contains(got.Backtrace, "in check") {
		t.Errorf("fail report backtrace = %q, want frames check and wait_watchdog", got.Backtrace)
	}
	if !slices.ContainsFunc(got.FailureLines, func(l string) bool { return l == "checking the watchdog" }) {
		t.Errorf("fail report failure context = %q, want the line the job echoed before the timeout", got.FailureLines)
	}
	if !slices.ContainsFunc(got.Console, func(l string) bool { return strings.Contains(l, "No such file or directory") }) {
		t.Errorf("fail report console lacks the ls error")
	}
	if got.Marks == 0 {
		t.Error("fail report timeline has no event marks")
	}
	if got.Baseline != "" {
		t.Errorf("fail report (no --baseline) has a baseline section: %q", got.Baseline)
	}

	// A run with --baseline: the report compares it with the baseline.
	got = load("baseline", baselineBundle(t, fail))
	if got.Baseline != "differs" {
		t.Errorf("baseline report verdict = %q, want differs", got.Baseline)
	}
	if len(got.BaselineDivergence) != 2 || !strings.Contains(got.BaselineDivergence[1], "WARNING: CPU: 0") {
		t.Errorf("baseline report first divergence = %q, want the baseline's line and the WARNING", got.BaselineDivergence)
	}
	if !slices.Contains(got.BaselineOnly, "WARNING: CPU: 0 PID: 1 at drivers/watchdog.c:12") {
		t.Errorf("baseline report lines only in this run = %q, want the WARNING", got.BaselineOnly)
	}
	if want := []string{"boot", "check", "off"}; !slices.Equal(got.BaselineStages, want) {
		t.Errorf("baseline report stages = %q, want %q", got.BaselineStages, want)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, u := range requests {
		if !strings.HasPrefix(u, "file://") {
			t.Errorf("the report requested %s: it must load nothing but itself", u)
		}
	}
	if len(requests) < 2 {
		t.Errorf("requests seen = %q, want both reports' loads (is the network listener working?)", requests)
	}
}
