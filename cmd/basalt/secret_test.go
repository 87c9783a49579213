package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"html"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.starlark.net/starlark"
)

// hostilePW holds every character that some output escapes; hostileToken
// too, but it is no device's: the job types it with secret=True.
const (
	hostilePW    = `p"a\ss<w>&'rd`
	hostileToken = `t'o\k"e<n>&x`
)

// secretForms are the forms in which a program could write s: raw, and
// the inner text (without the quotes the encoder adds) of Go's %q and %+q,
// JSON, a Starlark repr, XML/HTML escaping, and those escaped again (an
// error quoting the console with %q, JSON-encoded in result.json). They are
// computed here with the libraries that write the outputs, not with the
// redactor's own table.
func secretForms(s string) map[string]string {
	inner := func(q string) string { return q[1 : len(q)-1] }
	jsonOf := func(s string) string { b, _ := json.Marshal(s); return inner(string(b)) }
	xmlOf := func(s string) string { var b strings.Builder; xml.EscapeText(&b, []byte(s)); return b.String() }
	q := inner(strconv.Quote(s))
	repr := inner(starlark.String(s).String())
	return map[string]string{
		"raw": s, "%q": q, "%+q": inner(strconv.QuoteToASCII(s)), "json": jsonOf(s), "repr": repr,
		"xml": xmlOf(s), "html": html.EscapeString(s), "json of %q": jsonOf(q), "xml of %q": xmlOf(q),
		"json of repr": jsonOf(repr), "xml of repr": xmlOf(repr), "%q of repr": inner(strconv.Quote(repr)),
		"%q of json": inner(strconv.Quote(jsonOf(s))), "json of json": jsonOf(jsonOf(s)),
	}
}

// assertNoSecret fails if out holds any form of secret.
func assertNoSecret(t *testing.T, what, out, secret string) {
	t.Helper()
	for name, f := range secretForms(secret) {
		if strings.Contains(out, f) {
			i := strings.Index(out, f)
			t.Errorf("%s holds the secret in its %s form %q: ...%s...", what, name, f, out[max(0, i-80):min(len(out), i+len(f)+20)])
		}
	}
}

const hostileJob = `job(name = "hostile", device_type = "sim", timeout = "2m",
    params = {"kernel": "vmlinuz", "initrd": "initrd.gz", "pw": "", "token": ""})

def boot(ctx):
    pxe.serve(ctx.params.kernel, ctx.params.initrd)
    ipmi.bootdev("pxe")
    ipmi.power("on")
    sol.expect("(sim-initramfs) ", timeout = "30s")
    sol.mode("shell")

def leak(ctx):
    # a secret learned while the job runs is masked from then on
    # read by the read builtin, so the shell takes the line verbatim instead of
    # parsing its quotes; the console echoes it as typed
    sol.sendline("read -r x")
    sol.sendline(ctx.params.token, secret = True)
    print("token %r" % ctx.params.token)
    test.case("token " + ctx.params.token, "pass")
    pw = ctx.params.pw
    print(pw)
    print(repr(pw))
    print(json.encode({"pw": pw}))
    print("%r and %s" % (pw, [pw]))
    test.case("login " + pw, "pass", measurement = 1, units = pw)
    # typed without secret=True: the console echoes it, and the timeout
    # error quotes the console's last bytes with %q
    sol.sendline("read -r y")
    sol.sendline(pw)
    sol.expect("no such output", timeout = "3s")

def off(ctx):
    ipmi.power("off")

stage("boot", boot)
stage("leak", leak)
cleanup(off)
`

// A device password full of characters that outputs escape, repeated by a
// --param, printed by the job in its forms, echoed on the console and
// quoted by an expect timeout, must show in no form in any file of the
// bundle, on stdout or on stderr — and basalt check must not print it.
func TestSecretNeverLeavesEscaped(t *testing.T) {
	t.Setenv("BASALT_LOCK_DIR", filepath.Join(t.TempDir(), "locks"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(t.TempDir(), "cache"))
	t.Setenv("BASALT_TEST_HOSTILE_PW", hostilePW)
	dir := t.TempDir()
	for name, src := range map[string]string{
		"job.star":                 hostileJob,
		"vmlinuz":                  "a kernel",
		"initrd.gz":                "an initrd",
		"nodev.star":               "job(name = \"nodev\", params = {\"pw\": \"\"})\ndef s(ctx):\n    print(ctx.params.pw)\n    fail(repr(ctx.params.pw))\nstage(\"s\", s)\n",
		"lab/lab.star":             `lab(name = "t")`,
		"lab/devices/hostile.star": `device(type = "sim", mac = "02:42:00:00:00:07", ipmi_user = "lab", ipmi_password = secret("BASALT_TEST_HOSTILE_PW"))`,
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	job, labDir, out := filepath.Join(dir, "job.star"), filepath.Join(dir, "lab"), filepath.Join(dir, "out")

	var stdout, stderr bytes.Buffer
	code := run(context.Background(), context.Background(),
		[]string{"run", job, "--lab", labDir, "--device", "hostile", "--param", "pw=" + hostilePW, "--param", "token=" + hostileToken, "--out", out, "-v"},
		nil, &stdout, &stderr)
	if code != 4 {
		t.Fatalf("run exit %d, want 4 (the expect times out)\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	// The run did what the test needs: the console showed the password
	// (masked) and the stage failed on the expect timeout.
	con, _ := os.ReadFile(filepath.Join(out, "console.log"))
	if bytes.Count(con, []byte("******")) < 2 {
		t.Errorf("console.log = %q, want the typed password echoed and masked", con)
	}
	if !strings.Contains(stdout.String(), "stage leak: error") || !strings.Contains(stdout.String()+stderr.String(), "console.log, last") {
		t.Errorf("stdout = %q, want the leak stage failing on the expect timeout", stdout.String())
	}
	for _, secret := range []string{hostilePW, hostileToken} {
		assertNoSecret(t, "stdout", stdout.String(), secret)
		assertNoSecret(t, "stderr", stderr.String(), secret)
	}
	files := 0
	filepath.Walk(out, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		assertNoSecret(t, p, string(data), hostilePW)
		// result.json is saved again at the end: the params recorded
		// before the token was typed are masked too.
		assertNoSecret(t, p, string(data), hostileToken)
		files++
		return nil
	})
	if files < 7 {
		t.Errorf("bundle holds %d files, want result.json, events.jsonl, console.log, console.idx, job.log, junit.xml, report.html", files)
	}
	// report.html shows the console, the events and the error: masked there too.
	if page, err := os.ReadFile(filepath.Join(out, "report.html")); err != nil || !bytes.Contains(page, []byte("******")) {
		t.Errorf("report.html (%v) does not show the masked secret the console echoed", err)
	}
	for _, f := range []string{"result.json"} {
		data, _ := os.ReadFile(filepath.Join(out, f))
		if !json.Valid(data) {
			t.Errorf("%s is not valid JSON after masking:\n%s", f, data)
		}
	}

	// Without a device, a param repeating a lab secret is masked all the same.
	stdout.Reset()
	stderr.Reset()
	nodevOut := filepath.Join(dir, "nodev-out")
	code = run(context.Background(), context.Background(),
		[]string{"run", filepath.Join(dir, "nodev.star"), "--lab", labDir, "--param", "pw=" + hostilePW, "--out", nodevOut}, nil, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "job error") {
		t.Errorf("run nodev.star exit %d, stderr %q, want 2 and the fail() message", code, stderr.String())
	}
	assertNoSecret(t, "nodev stdout", stdout.String(), hostilePW)
	assertNoSecret(t, "nodev stderr", stderr.String(), hostilePW)
	for _, f := range []string{"result.json", "events.jsonl", "job.log", "junit.xml", "report.html"} {
		data, _ := os.ReadFile(filepath.Join(nodevOut, f))
		assertNoSecret(t, "nodev "+f, string(data), hostilePW)
	}

	// check prints the params: the one that repeats the password is masked.
	stdout.Reset()
	stderr.Reset()
	code = run(context.Background(), context.Background(),
		[]string{"check", job, "--lab", labDir, "--device", "hostile", "--param", "pw=" + hostilePW}, nil, &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), `pw = "******"`) {
		t.Errorf("check exit %d, stdout %q, want 0 and the pw param masked\nstderr: %s", code, stdout.String(), stderr.String())
	}
	assertNoSecret(t, "check stdout", stdout.String(), hostilePW)
	assertNoSecret(t, "check stderr", stderr.String(), hostilePW)
}
