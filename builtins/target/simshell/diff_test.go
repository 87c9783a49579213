package simshell

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/runtime/repo"
)

// diffLines are the command lines stdlib/*.star and builtins/target/*.go
// type into a target's shell (with relative paths, so that real busybox
// runs them in a directory of the test's own), and the shell features they
// rely on. {URL} is a loopback HTTP server with /hello, /img.gz and
// nothing else; {PORT} a port free on 127.0.0.1. Each line must print the
// same standard output and exit with the same status on the sim shell as
// on real busybox.
var diffLines = []string{
	// target.run's wrapper (frame.go).
	`printf '%s-S\n' "BAS""ALT-1"; eval 'echo hi; false' </dev/null; printf '\n%s-E:%d\n' "BAS""ALT-1" $?`,
	`echo BAS""ALT-1-S;eval 'echo hi; false'</dev/null;printf '\nBAS''ALT-1-E:%d\n' $?`,
	`false; echo $?; true; echo $?; (exit 3); echo $?`,
	// Checksums and sizes (target.push, deploy_image, health.star).
	`printf 'hello\n' > f; sha256sum f; md5sum f`,
	`printf 'hello\n' > f; wc -c f; wc -c < f`,
	`sha256sum nope; echo $?`,
	`dd if=/dev/zero of=z bs=1024 count=4 2>/dev/null; wc -c < z; head -c 512 z | wc -c`,
	`cat nope; echo $?`,
	// procfs and sysfs files: size 0 to stat, their content to a read.
	`ls -l /proc/version | tr -s ' ' | cut -d ' ' -f 5`,
	`ls -l /sys/class/net/lo/address | tr -s ' ' | cut -d ' ' -f 5`,
	`cat /proc/version > v; test -s v && echo nonempty; cp /proc/version v2; test -s v2 && echo copied`,
	`test -f /proc/version && echo file; test -d /proc && echo dir; test -r /proc/version && echo readable; test -e /nonexistent || echo none; test -d /proc/version || echo notdir`,
	// Files and directories.
	`mkdir -p a/b/c && test -d a/b/c && echo ok; mkdir a; echo $?; mkdir -p a; echo $?`,
	`printf x > s; cp s t && cat t; echo; cp nope t2; echo $?`,
	`mkdir -p d; printf y > d/f; rm -rf d; test -e d || echo gone`,
	// gzip and a deploy pipeline (deploy.go: wget | gunzip | dd).
	`printf 'abc' | gzip -c > g.gz; gunzip -c g.gz; echo; gunzip -c nope.gz; echo $?`,
	`wget -q -O - {URL}/img.gz | gunzip | dd of=disk bs=1M 2>/dev/null && sync; echo $?; sha256sum disk`,
	// wget (target.push, deploy_image).
	`wget -q -O - {URL}/hello; echo $?`,
	`wget -q -O - {URL}/missing; echo $?`,
	`wget -q -O out {URL}/hello && cat out`,
	// target.fetch (fetch.go): the copy of a file, of a procfs file, a
	// missing path and a directory.
	`p=f; d=fd; printf 'data\n' > f; if [ ! -e "$p" ]; then echo missing; elif [ -d "$p" ]; then echo directory; elif ! mkdir -p "$d"; then echo mkdir; elif ! cat "$p" > "$d/data"; then echo unreadable; else echo n0nce > "$d/nonce" && sha256sum "$d/data" && echo ok; fi`,
	`p=/proc/version; d=fd; if [ ! -e "$p" ]; then echo missing; elif [ -d "$p" ]; then echo directory; elif ! mkdir -p "$d"; then echo mkdir; elif ! cat "$p" > "$d/data"; then echo unreadable; else test -s "$d/data" && echo ok; fi`,
	`p=/proc/self/clear_refs; d=fd; if [ ! -e "$p" ]; then echo missing; elif [ -d "$p" ]; then echo directory; elif ! mkdir -p "$d"; then echo mkdir; elif ! cat "$p" > "$d/data"; then echo unreadable; else echo ok; fi`,
	`cat /proc/self/clear_refs; echo $?; test -f /proc/self/clear_refs && echo file`,
	`p=nope; if [ ! -e "$p" ]; then echo missing; elif [ -d "$p" ]; then echo directory; fi`,
	`p=/proc; if [ ! -e "$p" ]; then echo missing; elif [ -d "$p" ]; then echo directory; fi`,
	// Its httpd: started in the background with -f, alive, answering,
	// killed, gone.
	`mkdir -p w; echo n0nce > w/nonce; busybox httpd -f -p {PORT} -h w > w/log 2>&1 & h=$!; sleep 0.2 2>/dev/null || sleep 1; if kill -0 $h 2>/dev/null; then echo alive; fi; wget -q -O - http://127.0.0.1:{PORT}/nonce; kill $h; wait $h; echo $?; kill -0 $h 2>/dev/null; echo $?; wget -q -O - http://127.0.0.1:{PORT}/nonce; echo $?`,
	// A taken port: the second httpd exits at once, saying so.
	`mkdir -p w; busybox httpd -f -p {PORT} -h w & a=$!; sleep 0.2; busybox httpd -f -p {PORT} -h w > log 2>&1 & b=$!; sleep 0.2; kill -0 $b 2>/dev/null || { wait $b; echo exited $?; grep -c 'in use' log; }; kill $a; wait $a; echo $?`,
	// busybox httpd sends Content-Length from stat(): a procfs file
	// arrives empty.
	`busybox httpd -f -p {PORT} -h / & h=$!; sleep 0.2; wget -q -O - http://127.0.0.1:{PORT}/proc/version | wc -c; kill $h; wait $h; echo $?`,
	// test.run_definition: its tree (runtime/repo.Pack) unpacked with
	// tar, the errors tar reports, scripts found on PATH with the exported
	// variables, and the lava-test-case helper it installs.
	`wget -q -O t.tgz {URL}/tree.tar.gz && mkdir -p o && tar -xzf t.tgz -C o; echo $?; cat o/tree/run.sh; test -x o/tree/run.sh && echo exec; cat o/tree/link; cat o/tree/d/*/long; tar -tzf t.tgz; tar xzf t.tgz; echo $?; cat tree/link`,
	`tar -xzf nope; echo $?; echo hi > n; tar -xzf n; echo $?; tar -xzf n -C nodir; echo $?; tar; echo $?`,
	`mkdir -p b; printf '#!/bin/sh\necho script "$X" "$1"\n' > b/hi; chmod +x b/hi; PATH="$(pwd)/b:$PATH"; X=1; export X; hi arg; Y=2 sh -c 'echo "$X$Y"'; Z=3; sh -c 'echo "[$Z]"'; chmod -x b/hi; hi; echo $?; test -x b/hi || echo notexec; chmod +x b/hi; hi`,
	`mkdir -p b; wget -q -O b/lava-test-case {URL}/lava-test-case; chmod +x b/lava-test-case; PATH="$(pwd)/b:$PATH"; lava-test-case pwd --result pass; lava-test-case m --result pass --measurement 1.5 --units s; lava-test-case sh --shell false; lava-test-case ok --shell test -d /; lava-test-case bad 2>/dev/null; echo $?; lava-test-case x --result 2>/dev/null; echo $?; which lava-test-case > /dev/null; echo $?; which nope-nope; echo $?`,
	// The daemon form reports a taken port in its exit status.
	`busybox httpd -f -p {PORT} -h . & h=$!; sleep 0.2; busybox httpd -p {PORT} -h .; echo $?; kill $h`,
}

// diffStderrLines are compared with standard error too: target.fetch
// quotes what they print in its errors.
var diffStderrLines = []string{
	`cat /proc/self/clear_refs`,
	`cat nope`,
	`sha256sum nope`,
	`mkdir -p d; cat d; sha256sum d; head -c 1 nope`,
	`busybox httpd -f -p {PORT} -h . & h=$!; sleep 0.2; busybox httpd -f -p {PORT} -h .; kill $h`,
}

// TestDifferentialBusybox runs diffLines through real busybox (sh and its
// applets, as on a master image) and through the sim shell and compares
// what each printed on standard output and its exit status.
func TestDifferentialBusybox(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (Debian package busybox-static): the sim shell cannot be compared with it")
	}
	// busybox's applets under their own names, nothing else on PATH.
	bin := t.TempDir()
	if out, err := exec.Command(bb, "--install", "-s", bin).CombinedOutput(); err != nil {
		t.Fatalf("busybox --install: %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(bin, "httpd")); err != nil {
		t.Skip("this busybox has no httpd applet")
	}

	var img bytes.Buffer
	zw := gzip.NewWriter(&img)
	zw.Write(bytes.Repeat([]byte("disk image "), 5000))
	zw.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from the dispatcher\n") })
	mux.HandleFunc("/img.gz", func(w http.ResponseWriter, r *http.Request) { w.Write(img.Bytes()) })
	tree := packedTree(t)
	mux.HandleFunc("/tree.tar.gz", func(w http.ResponseWriter, r *http.Request) { w.Write(tree) })
	shim, err := os.ReadFile("../../test/shim/lava-test-case")
	if err != nil {
		t.Fatal(err)
	}
	mux.HandleFunc("/lava-test-case", func(w http.ResponseWriter, r *http.Request) { w.Write(shim) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	sim := startShell(t, Config{IP: "127.0.0.1"})
	for i, line := range append(diffLines, diffStderrLines...) {
		line := strings.ReplaceAll(line, "{URL}", srv.URL)
		// stderr is left out but for diffStderrLines: the interpreter's
		// own messages are not ash's, and no caller parses them.
		stderr := "/dev/null"
		if i >= len(diffLines) {
			stderr = "&1"
		}
		wrap := func(port int) string {
			return "{ " + strings.ReplaceAll(line, "{PORT}", strconv.Itoa(port)) + " ; } 2>" + stderr + "; echo \"@rc=$?\""
		}

		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bb, "sh", "-c", wrap(freeLoopbackPort(t)))
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + bin, "HOME=" + dir}
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		err := cmd.Run()
		cancel()
		if err != nil {
			t.Errorf("busybox sh -c %q: %v", line, err)
			continue
		}
		want := stdout.String()

		sim.run(fmt.Sprintf("mkdir -p /tmp/case%d && cd /tmp/case%d", i, i))
		got := sim.run(wrap(freeLoopbackPort(t)))
		if got != want {
			t.Errorf("%s\n  sim shell printed %q\n  busybox printed   %q", line, got, want)
		}
	}
}

// packedTree is a tree as test.run_definition sends it (runtime/repo.Pack):
// a directory, an executable script, a symlink and a name longer than a
// ustar header holds.
func packedTree(t *testing.T) []byte {
	t.Helper()
	var src bytes.Buffer
	tw := tar.NewWriter(&src)
	long := "d/" + strings.Repeat("x", 120) + "/long"
	for _, h := range []*tar.Header{
		{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "run.sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: 19},
		{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "run.sh"},
		{Name: long, Typeflag: tar.TypeReg, Mode: 0o644, Size: 5},
	} {
		h.Format = tar.FormatPAX // as git archive writes them
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "run.sh":
			tw.Write([]byte("#!/bin/sh\necho run\n"))
		case long:
			tw.Write([]byte("long\n"))
		}
	}
	tw.Close()
	var out bytes.Buffer
	if err := repo.Pack(&out, &src, "tree", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// freeLoopbackPort returns a TCP port that was free on 127.0.0.1 a moment
// ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
