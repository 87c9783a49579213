package simshell

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/target/simdisk"
	"github.com/google/go-cmp/cmp"
)

func TestEcho(t *testing.T) {
	c := startShell(t, Config{})
	tests := []struct{ cmd, want string }{
		{`echo hello world`, "hello world\n"},
		{`echo "a  b"   c`, "a  b c\n"},
		{`echo -n no newline; echo`, "no newline\n"},
		{`echo 'single $HOME'`, "single $HOME\n"},
		{`echo "double $HOME"`, "double /root\n"},
		{`echo -e 'tab\there'`, "tab\there\n"},
		{`busybox echo -e 'a\nb'`, "a\nb\n"},
		{`busybox echo -n x; echo y`, "xy\n"},
		{`X=42; echo "${X}x"`, "42x\n"},
		{`echo $(echo nested) $((6*7))`, "nested 42\n"},
		{`printf '%s=%03d\n' n 7`, "n=007\n"},
		{`echo a; echo b`, "a\nb\n"},
		{`false || echo or; true && echo and`, "or\nand\n"},
		{`false; echo $?`, "1\n"},
		{`test -f /proc/cmdline && echo file`, "file\n"},
		{`[ -e /nope ] || echo missing`, "missing\n"},
		{`for i in 1 2 3; do echo -n $i; done; echo`, "123\n"},
		{`echo out; echo err >&2`, "out\nerr\n"},
		{`echo hidden > /dev/null; echo shown`, "shown\n"},
	}
	for _, tt := range tests {
		if got := c.run(tt.cmd); got != tt.want {
			t.Errorf("run(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	c := startShell(t, Config{})
	tests := []struct{ cmd, want string }{
		{`frobnicate --now; echo rc=$?`, "sh: frobnicate: not found\nrc=127\n"},
		{`busybox frobnicate; echo rc=$?`, "busybox: applet not found\nrc=1\n"},
		{`/usr/local/bin/thing; echo rc=$?`, "sh: /usr/local/bin/thing: not found\nrc=127\n"},
		{`/bin/echo via path`, "via path\n"},
		{`gcc 2>/dev/null; echo rc=$?`, "rc=127\n"},
	}
	for _, tt := range tests {
		if got := c.run(tt.cmd); got != tt.want {
			t.Errorf("run(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestCommands(t *testing.T) {
	c := startShell(t, Config{Hostname: "calxeda01", Cmdline: "console=ttyAMA0,115200 ip=dhcp", IP: "127.0.0.1", MAC: "fc:2f:40:aa:bb:cc",
		Uname: "Linux calxeda01 3.5.0-27-highbank #46-Ubuntu SMP Mon Mar 25 23:19:40 UTC 2013 armv7l GNU/Linux", BootLog: "[    0.000000] Booting Linux on physical CPU 0"})
	c.run(`printf 'alpha\nbeta\ngamma\ndelta\nepsilon\n' > /tmp/words`)
	tests := []struct{ cmd, want string }{
		{`cat /proc/cmdline`, "console=ttyAMA0,115200 ip=dhcp\n"},
		{`hostname`, "calxeda01\n"},
		{`uname -r`, "3.5.0-27-highbank\n"},
		{`uname -m`, "armv7l\n"},
		{`uname`, "Linux\n"},
		{`uname -a`, "Linux calxeda01 3.5.0-27-highbank #46-Ubuntu SMP Mon Mar 25 23:19:40 UTC 2013 armv7l GNU/Linux\n"},
		{`dmesg`, "[    0.000000] Booting Linux on physical CPU 0\n"},
		{`head -n 2 /tmp/words`, "alpha\nbeta\n"},
		{`head -2 /tmp/words`, "alpha\nbeta\n"},
		{`head -c 3 /tmp/words`, "alp"},
		{`tail -n 2 /tmp/words`, "delta\nepsilon\n"},
		{`tail -n +4 /tmp/words`, "delta\nepsilon\n"},
		{`tail -c 4 /tmp/words`, "lon\n"},
		{`wc -l < /tmp/words`, "5\n"},
		{`wc -l /tmp/words`, "5 /tmp/words\n"},
		{`cat /tmp/words | wc -w`, "5\n"},
		{`grep ta /tmp/words`, "beta\ndelta\n"},
		{`grep -c a /tmp/words`, "4\n"},
		{`grep -v a /tmp/words`, "epsilon\n"},
		{`grep -n '^g' /tmp/words`, "3:gamma\n"},
		{`grep -E 'al|mm' /tmp/words`, "alpha\ngamma\n"},
		{`grep 'l\(ph\|ta\)' /tmp/words`, "alpha\ndelta\n"},
		{`grep -i ALPHA /tmp/words`, "alpha\n"},
		{`grep -q zeta /tmp/words; echo $?`, "1\n"},
		{`grep -q beta /tmp/words; echo $?`, "0\n"},
		{`grep x /nope; echo $?`, "grep: /nope: No such file or directory\n2\n"},
		{`mkdir -p /srv/a/b && touch /srv/a/b/f && ls /srv/a/b`, "f\n"},
		{`mkdir /srv; echo $?`, "mkdir: can't create directory '/srv': File exists\n1\n"},
		{`cp /tmp/words /srv/a && cat /srv/a/words | head -1`, "alpha\n"},
		{`mv /srv/a/words /srv/w2 && ls /srv`, "a\nw2\n"},
		{`rm /srv/w2 && ls /srv`, "a\n"},
		{`rm /srv/a; echo $?`, "rm: '/srv/a' is a directory\n1\n"},
		{`rm -r /srv/a && ls /srv; echo done`, "done\n"},
		{`cat /nope; echo $?`, "cat: can't open '/nope': No such file or directory\n1\n"},
		{`basename /a/b/c.img.gz .gz; dirname /a/b/c`, "c.img\n/a/b\n"},
		{`echo abc | sha256sum`, "edeaaff3f1774ad2888673770c6d64097e391bc362d7d6fb34982ddf0efd18cb  -\n"},
		{`echo abc | md5sum`, "0bee89b07a248e27c83fc3d5951213c1  -\n"},
		{`id; whoami`, "uid=0(root) gid=0(root) groups=0(root)\nroot\n"},
		{`hostname -i`, "127.0.0.1\n"},
		{`ip -4 addr show eth0 | grep inet`, "    inet 127.0.0.1/8 brd 127.255.255.255 scope global eth0\n"},
		{`ifconfig eth0 | grep -o 'inet addr:[0-9.]*'`, "inet addr:127.0.0.1\n"},
		{`ip link show eth0 | grep -o 'ether [0-9a-f:]*'`, "ether fc:2f:40:aa:bb:cc\n"},
		{`which dd kexec`, "/bin/dd\n/sbin/kexec\n"},
		{`ls /tmp/*ds`, "/tmp/words\n"},
		{`sh -c 'echo $1-$2' x one two`, "one-two\n"},
		{`date +%s | grep -c '^[0-9]*$'`, "1\n"},
		{`mkdir -p /work/sub && cd /work/sub && pwd && echo hi > f && cat /work/sub/f && cd .. && pwd && ls`, "/work/sub\nhi\n/work\nsub\n"},
		{`cd /work; cd sub; cd -; cd; pwd`, "/work\n/root\n"},
		{`cd /nope 2>/dev/null; echo $?; pwd`, "1\n/root\n"},
		{`[ -x /work/sub ] && [ -r sub ] 2>/dev/null; echo $?`, "1\n"},
		{`cd /work && [ -x /work/sub ] && [ -r sub ] && echo ok; cd`, "ok\n"},
		{`printf 'b 2\na 10\nc 1\na 10\n' | sort`, "a 10\na 10\nb 2\nc 1\n"},
		{`printf 'b 2\na 10\nc 1\n' | sort -n -k 2`, "c 1\nb 2\na 10\n"},
		{`printf 'x\nx\ny\n' | uniq -c`, "      2 x\n      1 y\n"},
		{`echo a:b:c:d | cut -d: -f2,4`, "b:d\n"},
		{`echo hello | tr a-z A-Z; echo a-b-c | tr -d -`, "HELLO\nabc\n"},
		{`seq 3 | tee /tmp/seq | wc -l; cat /tmp/seq`, "3\n1\n2\n3\n"},
		{`echo 'root=/dev/sda1 ro' | sed 's/sda1/sda2/; s/ ro$/ rw/'`, "root=/dev/sda2 rw\n"},
		{`echo aaa | sed 's/a/b/g'; echo abc | sed -n 's/\(b\)/[\1]/p'`, "bbb\na[b]c\n"},
		{`mount /dev/sdz1 /mnt; echo $?`, "mount: mounting /dev/sdz1 on /mnt failed: No such device or address\n1\n"},
		{`mount -t proc proc /mnt && mount | tail -1 && umount /mnt && mount | grep -c mnt`, "proc on /mnt type proc (rw,relatime)\n0\n"},
	}
	for _, tt := range tests {
		if got := c.run(tt.cmd); got != tt.want {
			t.Errorf("run(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestScript(t *testing.T) {
	c := startShell(t, Config{})
	c.run(`printf '#!/bin/sh\necho "args: $*"\nexit 4\n' > /root/s.sh`)
	if got, want := c.run(`./s.sh a b; echo rc=$?`), "sh: ./s.sh: Permission denied\nrc=126\n"; got != want {
		t.Errorf("run(./s.sh) before chmod = %q, want %q", got, want)
	}
	if got, want := c.run(`chmod +x s.sh && ./s.sh a b; echo rc=$?`), "args: a b\nrc=4\n"; got != want {
		t.Errorf("run(./s.sh) = %q, want %q", got, want)
	}
	if got, want := c.run(`sh /root/s.sh c; echo rc=$?`), "args: c\nrc=4\n"; got != want {
		t.Errorf("run(sh s.sh) = %q, want %q", got, want)
	}
}

func TestPromptAndContinuation(t *testing.T) {
	c := startShell(t, Config{})
	c.send("if true; then\r")
	c.expect("if true; then\r\n> ")
	c.send("echo inside; fi\r")
	if got, want := strings.ReplaceAll(c.expect(testPrompt), "\r\n", "\n"), "echo inside; fi\ninside\n"; got != want {
		t.Errorf("continued if = %q, want %q", got, want)
	}
	c.send("export PS1='lava-test: \\w \\$ '\r")
	c.expect("lava-test: ~ # ")
	c.send("cd /tmp\r")
	c.expect("lava-test: /tmp # ")
}

func TestLineDiscipline(t *testing.T) {
	c := startShell(t, Config{})
	// Backspace (DEL and BS) edit the line; the echo erases the character.
	c.send("echo abx\x7fc\r")
	c.expect("echo abx\b \bc\r\n")
	if got := c.expect(testPrompt); got != "abc\r\n" {
		t.Errorf("output after backspace = %q, want %q", got, "abc\r\n")
	}
	c.send("echo zz\x08\x08yy\r")
	if got := c.expect(testPrompt); !strings.HasSuffix(got, "\r\nyy\r\n") {
		t.Errorf("output after ^H = %q, want it to end in yy", got)
	}
	// ^U kills the line.
	c.send("echo wrong\x15echo right\r")
	if got := c.expect(testPrompt); !strings.HasSuffix(got, "\r\nright\r\n") {
		t.Errorf("output after ^U = %q, want right", got)
	}
	// "\r\n" ends one line, not two; "\n" alone ends a line.
	c.send("echo crlf\r\necho lf\n")
	// The second line is echoed as it is typed, before the first runs.
	got := c.expect(testPrompt) + testPrompt + c.expect(testPrompt)
	if want := "echo crlf\r\necho lf\r\ncrlf\r\n" + testPrompt + "lf\r\n"; got != want {
		t.Errorf("CRLF handling = %q, want %q", got, want)
	}
	// Arrow keys do not reach the command line.
	c.send("echo \x1b[Aup\r")
	if got := c.expect(testPrompt); !strings.HasSuffix(got, "\r\nup\r\n") {
		t.Errorf("output after an escape sequence = %q, want up", got)
	}
	// stty -echo stops the echo; output still comes.
	c.run("stty -echo")
	c.send("echo secret\r")
	if got := c.expect(testPrompt); got != "secret\r\n" {
		t.Errorf("output with -echo = %q, want %q", got, "secret\r\n")
	}
	c.send("stty echo\r")
	c.expect(testPrompt)
	// Lines typed while a command runs wait their turn.
	c.send("sleep 0.2; echo first\recho second\r")
	c.expect("first\r\n")
	c.expect(testPrompt)
	c.expect("second\r\n")
}

func TestCtrlC(t *testing.T) {
	c := startShell(t, Config{})
	c.send("sleep 1000; echo not reached\r")
	c.expect("sleep 1000; echo not reached\r\n")
	c.send("\x03")
	if got := c.expect(testPrompt); got != "^C\r\n" {
		t.Errorf("output after ^C = %q, want %q", got, "^C\r\n")
	}
	if got := c.run("echo alive"); got != "alive\n" {
		t.Errorf("run after ^C = %q", got)
	}
	// ^C at the prompt drops the line.
	c.send("echo dropped\x03")
	c.expect("^C\r\n" + testPrompt)
	if got := c.run("echo kept"); got != "kept\n" {
		t.Errorf("run after ^C at the prompt = %q", got)
	}
}

func TestContextCancelStopsServe(t *testing.T) {
	c := startShell(t, Config{})
	c.send("sleep 1000\r")
	c.expect("sleep 1000\r\n")
	c.cancel()
	if err := c.serveResult(); !errors.Is(err, context.Canceled) {
		t.Errorf("Serve after cancel = %v, want context.Canceled", err)
	}
}

func TestBackground(t *testing.T) {
	c := startShell(t, Config{})
	c.run("(sleep 0.2; echo bgdone > /tmp/bg) &")
	c.run("echo fg")
	c.send("while [ ! -s /tmp/bg ]; do sleep 0.05; done; cat /tmp/bg\r")
	c.expect("bgdone")
}

// Host files outside Root are out of reach through paths, "..", symlinks,
// redirections and httpd.
func TestConfinement(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("HOSTSECRET\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	c := startShell(t, Config{Root: root})
	for name, target := range map[string]string{"abs": secret, "rel": "../../secret", "inside": "../secret", "deep": "../../../../../../" + secret, "etc": "/etc"} {
		if err := os.Symlink(target, filepath.Join(root, "tmp", name)); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	c.run(fmt.Sprintf("httpd -p %d -h /", port))
	cmds := []string{
		`cat /../secret`,
		`cat ../../../secret`,
		`cat /tmp/abs`,
		`cat /tmp/rel`,
		`cat /tmp/deep`,
		`cat < /tmp/abs`,
		`cat /tmp/etc/passwd`,
		`cp /tmp/rel /tmp/copy; cat /tmp/copy`,
		`ls /..`,
		`echo overwritten > /tmp/abs`,
		`echo overwritten > /../secret`,
		`dd if=/tmp/rel`,
		`sha256sum /tmp/abs`,
		`cd /tmp/etc; pwd`,
		`grep -r HOSTSECRET /tmp/abs`,
		`wget -q -O - http://127.0.0.1:` + fmt.Sprint(port) + `/tmp/abs`,
		`wget -q -O - http://127.0.0.1:` + fmt.Sprint(port) + `/../secret`,
		`ln -s /../secret /tmp/mine; cat /tmp/mine`,
		fmt.Sprintf(`cat %s`, secret),
	}
	for _, cmd := range cmds {
		if got := c.run(cmd); strings.Contains(got, "HOSTSECRET") {
			t.Errorf("run(%q) = %q: reached the host file", cmd, got)
		}
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "HOSTSECRET\n" {
		t.Errorf("host file after the shell = %q, %v; want it unchanged", b, err)
	}
	for _, p := range []string{"/tmp/rel", "/tmp/abs", "/tmp/deep", "/../secret", "/tmp/etc/passwd"} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, p))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(body, []byte("HOSTSECRET")) || bytes.Contains(body, []byte("root:x:0:0:root:/root:/bin/bash")) {
			t.Errorf("httpd GET %s = %d %q: reached a host file", p, resp.StatusCode, body)
		}
	}
	// The symlink that stays inside Root works.
	if got := c.run("cat /tmp/inside"); got != "overwritten\n" {
		t.Errorf("cat /tmp/inside = %q, want the target's /secret", got)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// deployServer serves files by name and records the Range headers it saw.
type deployServer struct {
	*httptest.Server
	mu     sync.Mutex
	ranges []string
}

func newDeployServer(t *testing.T, files map[string][]byte) *deployServer {
	d := &deployServer{}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.ranges = append(d.ranges, r.Header.Get("Range"))
		d.mu.Unlock()
		b, ok := files[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(d.Close)
	return d
}

// The deploy pipeline of target.deploy_image writes the image to the disk
// file byte for byte, and the disk then boots (simdisk.Read).
func TestDeployPipeline(t *testing.T) {
	img := simdisk.Image{Hostname: "deployed", OS: "Ubuntu 12.04", Size: simdisk.DefaultSize}
	raw, err := simdisk.Bytes(img)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"img": raw}
	for _, comp := range []simdisk.Compression{simdisk.Gzip, simdisk.XZ} {
		var b bytes.Buffer
		if err := simdisk.WriteCompressed(&b, img, comp); err != nil {
			t.Fatal(err)
		}
		files["img."+string(comp)] = b.Bytes()
	}
	files["bad.gz"] = files["img.gz"][:len(files["img.gz"])/2]
	srv := newDeployServer(t, files)

	tests := []struct {
		name, pipeline string
		disk           []byte // initial disk content
		bootable       bool
	}{
		{"gzip", "wget -O - %s/img.gz | gunzip | dd of=/dev/sda bs=1M", nil, true},
		{"xz", "wget -q -O - %s/img.xz | xz -d | dd of=/dev/sda bs=4M conv=fsync", nil, true},
		{"raw over old disk", "wget -q -O - %s/img | dd of=/dev/sda bs=64k", bytes.Repeat([]byte{0xee}, 6<<20), true},
		{"truncated gzip", "wget -q -O - %s/bad.gz | gunzip | dd of=/dev/sda bs=1M", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disk := filepath.Join(t.TempDir(), "sda.img")
			if tt.disk != nil {
				if err := os.WriteFile(disk, tt.disk, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c := startShell(t, Config{Disks: map[string]string{"/dev/sda": disk}})
			out := c.run(fmt.Sprintf(tt.pipeline, srv.URL))
			got, err := os.ReadFile(disk)
			if err != nil {
				t.Fatal(err)
			}
			_, bootErr := simdisk.Read(disk)
			if !tt.bootable {
				if !strings.Contains(out, "gunzip: ") {
					t.Errorf("pipeline output = %q, want a gunzip error", out)
				}
				if !errors.Is(bootErr, simdisk.ErrNoBootableDevice) {
					t.Errorf("simdisk.Read after a truncated image = %v, want ErrNoBootableDevice", bootErr)
				}
				return
			}
			if !strings.Contains(out, " records in\n") || !strings.Contains(out, fmt.Sprintf("%d bytes (4.0MB) copied", len(raw))) {
				t.Errorf("dd summary = %q, want records in/out and %d bytes copied", out, len(raw))
			}
			if len(got) < len(raw) || sha(got[:len(raw)]) != sha(raw) {
				t.Fatalf("disk holds %d bytes, sha256 of the first %d = %s, want the image's %s", len(got), len(raw), sha(got[:min(len(got), len(raw))]), sha(raw))
			}
			if tt.disk == nil && len(got) != len(raw) {
				t.Errorf("blank disk grew to %d bytes, want %d", len(got), len(raw))
			}
			if bootErr != nil {
				t.Errorf("simdisk.Read after deploy = %v", bootErr)
			}
			// The target checksums exactly the written bytes.
			sum := c.run(fmt.Sprintf("head -c %d /dev/sda | sha256sum", len(raw)))
			if want := sha(raw) + "  -\n"; sum != want {
				t.Errorf("head -c N /dev/sda | sha256sum = %q, want %q", sum, want)
			}
			sum = c.run("sha256sum /dev/sda")
			if want := sha(got) + "  /dev/sda\n"; sum != want {
				t.Errorf("sha256sum /dev/sda = %q, want %q", sum, want)
			}
			if got, want := c.run("blockdev --getsize64 /dev/sda"), fmt.Sprintf("%d\n", len(got)); got != want {
				t.Errorf("blockdev --getsize64 = %q, want %q", got, want)
			}
		})
	}
}

func TestWget(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	srv := newDeployServer(t, map[string][]byte{"files/data.bin": payload})
	c := startShell(t, Config{})

	out := c.run(fmt.Sprintf("wget %s/files/data.bin; echo rc=$?", srv.URL))
	if !strings.Contains(out, "saving to 'data.bin'") || !strings.HasSuffix(out, "rc=0\n") {
		t.Errorf("wget output = %q", out)
	}
	if got := c.run("sha256sum data.bin"); got != sha(payload)+"  data.bin\n" {
		t.Errorf("sha256sum of the download = %q, want %s", got, sha(payload))
	}

	// -c resumes a partial file with a Range request.
	c.run("head -c 1000 data.bin > part.bin")
	srv.mu.Lock()
	srv.ranges = nil
	srv.mu.Unlock()
	if got := c.run(fmt.Sprintf("wget -q -c -O part.bin %s/files/data.bin; echo rc=$?", srv.URL)); got != "rc=0\n" {
		t.Errorf("wget -c output = %q", got)
	}
	if got := c.run("sha256sum part.bin"); got != sha(payload)+"  part.bin\n" {
		t.Errorf("sha256sum after resume = %q, want %s", got, sha(payload))
	}
	srv.mu.Lock()
	ranges := srv.ranges
	srv.mu.Unlock()
	if d := cmp.Diff([]string{"bytes=1000-"}, ranges); d != "" {
		t.Errorf("Range headers of wget -c (-want +got):\n%s", d)
	}
	// Resuming a complete file is a no-op success.
	if got := c.run(fmt.Sprintf("wget -q -c -O part.bin %s/files/data.bin; echo rc=$?", srv.URL)); got != "rc=0\n" {
		t.Errorf("wget -c of a complete file = %q", got)
	}

	tests := []struct{ cmd, want string }{
		{fmt.Sprintf("wget -q -O - %s/nope; echo rc=$?", srv.URL), "wget: server returned error: HTTP/1.1 404 Not Found\nrc=1\n"},
		{"wget -q -O - http://10.255.255.1/x; echo rc=$?", "wget: can't connect to remote host (10.255.255.1): Network is unreachable\nrc=1\n"},
		{"wget -q -O - http://example.invalid/x; echo rc=$?", "wget: can't connect to remote host (example.invalid): Network is unreachable\nrc=1\n"},
		{fmt.Sprintf("wget -q -O - http://127.0.0.1:%d/x; echo rc=$?", freePort(t)), "wget: can't connect to remote host (127.0.0.1): Connection refused\nrc=1\n"},
	}
	for _, tt := range tests {
		if got := c.run(tt.cmd); got != tt.want {
			t.Errorf("run(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

// httpd serves the target's files over real HTTP with Range support, in the
// background, until the shell stops.
func TestHttpd(t *testing.T) {
	var events []string
	var mu sync.Mutex
	c := startShell(t, Config{Emit: func(typ string, f map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, fmt.Sprintf("%s %v %v", typ, f["path"], f["status"]))
	}})
	c.run("mkdir -p /var/www/results && dd if=/dev/urandom of=/var/www/results/log.bin bs=1k count=100 2>/dev/null")
	want, err := os.ReadFile(filepath.Join(c.sh.cfg.Root, "var/www/results/log.bin"))
	if err != nil || len(want) != 100<<10 {
		t.Fatalf("test file: %d bytes, %v", len(want), err)
	}
	ranged := 0 // range requests made
	for _, tt := range []struct{ name, cmd string }{
		{"daemon", "httpd -p %d -h /var/www"},
		{"foreground in background", "busybox httpd -f -v -p 127.0.0.1:%d -h /var/www & true"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			port := freePort(t)
			if got := c.run(fmt.Sprintf(tt.cmd+"; echo rc=$?", port)); got != "rc=0\n" {
				t.Fatalf("httpd = %q", got)
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/results/log.bin", port)
			var body []byte
			var resp *http.Response
			for range 100 { // the background job may not listen yet
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Range", "bytes=1000-1999")
				if resp, err = http.DefaultClient.Do(req); err == nil {
					ranged++
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[1000:2000]) {
				t.Errorf("GET Range bytes=1000-1999 = %d, %d bytes (equal %v), want 206 and bytes 1000-1999", resp.StatusCode, len(body), bytes.Equal(body, want[1000:2000]))
			}
			resp, err = http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || sha(body) != sha(want) {
				t.Errorf("GET = %d, sha256 %s, want 200 and %s", resp.StatusCode, sha(body), sha(want))
			}
			// The target fetches from itself too.
			if got := c.run(fmt.Sprintf("wget -q -O - %s | sha256sum", url)); got != sha(want)+"  -\n" {
				t.Errorf("wget from the target's own httpd = %q", got)
			}
			if curl, err := exec.LookPath("curl"); err == nil {
				ranged++
				out, err := exec.Command(curl, "-sf", "-r", "0-99", url).Output()
				if err != nil || !bytes.Equal(out, want[:100]) {
					t.Errorf("curl -r 0-99 = %d bytes, %v; want the first 100 bytes", len(out), err)
				}
			} else {
				t.Log("curl not installed; skipping the check with curl")
			}
			if got := c.run(fmt.Sprintf("httpd -p %d -h /var/www; echo rc=$?", port)); got != "httpd: bind: Address already in use\nrc=1\n" {
				t.Errorf("second httpd on the same port = %q", got)
			}
		})
	}
	mu.Lock()
	n := 0
	for _, e := range events {
		if e == "sim.httpd /results/log.bin 206" {
			n++
		}
	}
	mu.Unlock()
	if n != ranged {
		t.Errorf("sim.httpd events for the range requests = %d, want %d (events %q)", n, ranged, events)
	}
	// Serve's end stops the servers.
	port := freePort(t)
	c.run(fmt.Sprintf("httpd -p %d -h /var/www", port))
	c.cancel()
	c.serveResult()
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		t.Errorf("httpd still answers after Serve returned")
	}
}

func TestKexec(t *testing.T) {
	type got struct {
		kernel, initrd []byte
		append         string
	}
	ch := make(chan got, 1)
	c := startShell(t, Config{Hooks: Hooks{Kexec: func(k, i []byte, a string) { ch <- got{k, i, a} }}})
	c.run("mkdir -p /mnt/boot && printf 'KERNEL\\x00\\x01' > /mnt/boot/vmlinuz && echo INITRD > /mnt/boot/initrd.img")
	if out := c.run("kexec -e; echo rc=$?"); out != "kexec: Nothing has been loaded!\nrc=1\n" {
		t.Errorf("kexec -e with nothing loaded = %q", out)
	}
	if out := c.run(`kexec -l /mnt/boot/vmlinuz --initrd=/mnt/boot/initrd.img --append="root=/dev/sda2 console=ttyAMA0,115200"; echo rc=$?`); out != "rc=0\n" {
		t.Errorf("kexec -l = %q", out)
	}
	c.send("kexec -e\r")
	c.expect("kexec_core: Starting new kernel\r\n")
	if err := c.serveResult(); !errors.Is(err, ErrKexec) {
		t.Errorf("Serve after kexec -e = %v, want ErrKexec", err)
	}
	select {
	case g := <-ch:
		want := got{[]byte("KERNEL\x00\x01"), []byte("INITRD\n"), "root=/dev/sda2 console=ttyAMA0,115200"}
		if !bytes.Equal(g.kernel, want.kernel) || !bytes.Equal(g.initrd, want.initrd) || g.append != want.append {
			t.Errorf("Kexec hook got (%q, %q, %q), want (%q, %q, %q)", g.kernel, g.initrd, g.append, want.kernel, want.initrd, want.append)
		}
	default:
		t.Error("Kexec hook was not called")
	}
	if err := c.sh.Serve(context.Background(), nil); !errors.Is(err, ErrKexec) {
		t.Errorf("Serve of a halted shell = %v, want ErrKexec", err)
	}
}

func TestPower(t *testing.T) {
	for _, tt := range []struct {
		cmd, output string
		want        error
	}{
		{"reboot", "reboot: Restarting system", ErrReboot},
		{"poweroff", "reboot: Power down", ErrPoweroff},
		{"busybox halt", "reboot: Power down", ErrPoweroff},
		{"(sleep 0.1; reboot -f) & sleep 0", "reboot: Restarting system", ErrReboot},
	} {
		t.Run(tt.cmd, func(t *testing.T) {
			var called []string
			var mu sync.Mutex
			hook := func(name string) func() {
				return func() { mu.Lock(); called = append(called, name); mu.Unlock() }
			}
			c := startShell(t, Config{Hooks: Hooks{Reboot: hook("reboot"), Poweroff: hook("poweroff")}})
			c.send(tt.cmd + "; echo after\r")
			c.expect(tt.output)
			if err := c.serveResult(); !errors.Is(err, tt.want) {
				t.Errorf("Serve after %s = %v, want %v", tt.cmd, err, tt.want)
			}
			mu.Lock()
			defer mu.Unlock()
			want := []string{"reboot"}
			if tt.want == ErrPoweroff {
				want = []string{"poweroff"}
			}
			if d := cmp.Diff(want, called); d != "" {
				t.Errorf("hooks called (-want +got):\n%s", d)
			}
		})
	}
}

func TestDd(t *testing.T) {
	c := startShell(t, Config{})
	c.run("printf 0123456789 > /tmp/src")
	tests := []struct{ cmd, want string }{
		{"dd if=/tmp/src bs=4 status=noxfer", "0123456789" + "2+1 records in\n2+1 records out\n"},
		{"dd if=/tmp/src bs=2 skip=2 count=2 2>/dev/null", "4567"},
		{"dd if=/tmp/src of=/tmp/dst bs=1 seek=3 2>/dev/null; cat /tmp/dst | wc -c", "13\n"},
		{"printf AB | dd of=/tmp/src bs=1 seek=2 conv=notrunc status=none; cat /tmp/src", "01AB456789"},
		{"printf AB | dd of=/tmp/src bs=1 seek=2 status=none; cat /tmp/src", "01AB"},
		{"dd if=/dev/zero bs=1k count=2 2>/dev/null | wc -c", "2048\n"},
		{"dd if=/tmp/nope 2>&1; echo rc=$?", "dd: can't open '/tmp/nope': No such file or directory\nrc=1\n"},
		{"dd bs=0 2>&1; echo rc=$?", "dd: invalid block size\nrc=1\n"},
	}
	for _, tt := range tests {
		if got := c.run(tt.cmd); got != tt.want {
			t.Errorf("run(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestCompression(t *testing.T) {
	c := startShell(t, Config{})
	c.run("dd if=/dev/urandom of=/tmp/f bs=1k count=64 2>/dev/null; sha256sum /tmp/f > /tmp/f.sum")
	tests := []struct{ cmd, want string }{
		{"gzip /tmp/f && ls /tmp/f*", "/tmp/f.gz\n/tmp/f.sum\n"},
		{"gunzip /tmp/f.gz && sha256sum -c /tmp/f.sum", "/tmp/f: OK\n"},
		{"xz -k /tmp/f && xzcat /tmp/f.xz | sha256sum | cut -d' ' -f1 > /tmp/x.sum; grep -c -F \"$(cat /tmp/x.sum)\" /tmp/f.sum", "1\n"},
		{"rm /tmp/f && unxz /tmp/f.xz && sha256sum -c /tmp/f.sum", "/tmp/f: OK\n"},
		{"gzip -c /tmp/f | zcat | sha256sum -c /tmp/f.sum 2>&1 | head -1", "/tmp/f: OK\n"},
		{"echo notgzip | gunzip; echo rc=$?", "gunzip: invalid magic\nrc=1\n"},
		{"echo notxz | xz -d; echo rc=$?", "xz: invalid magic\nrc=1\n"},
		{"echo x > /tmp/f; sha256sum -c /tmp/f.sum; echo rc=$?", "/tmp/f: FAILED\nsha256sum: WARNING: 1 of computed checksums did NOT match\nrc=1\n"},
	}
	for _, tt := range tests {
		if got := c.run(tt.cmd); got != tt.want {
			t.Errorf("run(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

// Files compressed by the real gzip and xz tools decompress in the shell.
func TestCompressionPeers(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	c := startShell(t, Config{Root: root})
	data := bytes.Repeat([]byte("basalt sim payload\n"), 5000)
	if err := os.WriteFile(filepath.Join(root, "tmp", "p"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"gzip", "xz"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Logf("%s not installed; skipping its check", tool)
			continue
		}
		out, err := exec.Command(path, "-c", filepath.Join(root, "tmp", "p")).Output()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "tmp", "p."+map[string]string{"gzip": "gz", "xz": "xz"}[tool]), out, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := map[string]string{"gzip": "zcat /tmp/p.gz | sha256sum", "xz": "xzcat /tmp/p.xz | sha256sum"}[tool]
		if got := c.run(cmd); got != sha(data)+"  -\n" {
			t.Errorf("run(%q) = %q, want %s", cmd, got, sha(data))
		}
		// And the tool reads what the shell wrote.
		c.run(map[string]string{"gzip": "gzip -c /tmp/p > /tmp/q.gz", "xz": "xz -c /tmp/p > /tmp/q.xz"}[tool])
		ext := map[string]string{"gzip": "gz", "xz": "xz"}[tool]
		out, err = exec.Command(path, "-dc", filepath.Join(root, "tmp", "q."+ext)).Output()
		if err != nil || !bytes.Equal(out, data) {
			t.Errorf("%s -dc of the shell's output: %d bytes, %v", tool, len(out), err)
		}
	}
}

func BenchmarkDeployPipeline(b *testing.B) {
	img := simdisk.Image{Size: 16 << 20}
	var gz bytes.Buffer
	if err := simdisk.WriteCompressed(&gz, img, simdisk.Gzip); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(gz.Bytes()) }))
	defer srv.Close()
	dir := b.TempDir()
	sh, err := New(Config{Root: filepath.Join(dir, "root"), Disks: map[string]string{"/dev/sda": filepath.Join(dir, "sda")}})
	if err != nil {
		b.Fatal(err)
	}
	defer sh.Close()
	r, err := sh.newRunner(nil, io.Discard, io.Discard, "/root")
	if err != nil {
		b.Fatal(err)
	}
	f, err := parse(fmt.Sprintf("wget -q -O - %s/img.gz | gunzip | dd of=/dev/sda bs=1M 2>/dev/null", srv.URL))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(img.Size)
	for b.Loop() {
		if err := r.Run(context.Background(), f); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(img.Size)*float64(b.N)/b.Elapsed().Seconds()/(1<<20), "MiB/s")
}

// When the console can set read deadlines (a net.Conn here), Serve leaves no
// Read behind: the next reader of the line gets every byte typed after
// Serve returned.
func TestServeReleasesConsole(t *testing.T) {
	sh, err := New(Config{Root: filepath.Join(t.TempDir(), "root"), Prompt: testPrompt})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	dev, line := net.Pipe()
	defer dev.Close()
	defer line.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sh.Serve(ctx, dev) }()
	buf := make([]byte, len(testPrompt))
	if _, err := io.ReadFull(line, buf); err != nil || string(buf) != testPrompt {
		t.Fatalf("first console output = %q, %v; want the prompt", buf, err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve = %v, want context.Canceled", err)
	}
	go io.WriteString(line, "next boot\n")
	got := make([]byte, len("next boot\n"))
	if _, err := io.ReadFull(dev, got); err != nil || string(got) != "next boot\n" {
		t.Errorf("read after Serve returned = %q, %v; want %q", got, err, "next boot\n")
	}
}
