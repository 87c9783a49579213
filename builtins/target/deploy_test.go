package target

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/target/simdisk"
	"github.com/google/go-cmp/cmp"
)

// serveHTTP runs h on a loopback port until the test ends.
func serveHTTP(t *testing.T, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return "http://" + ln.Addr().String()
}

// corruptingPublisher publishes through a real Publisher but hands out
// the URL of a proxy that flips one byte of every answer at offset at.
type corruptingPublisher struct {
	Publisher
	proxy string
	at    int64

	mu   sync.Mutex
	urls map[string]string // proxy path -> upstream URL
}

func newCorruptingPublisher(t *testing.T, p Publisher, at int64) *corruptingPublisher {
	c := &corruptingPublisher{Publisher: p, at: at, urls: map[string]string{}}
	c.proxy = serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		up, ok := c.urls[r.URL.Path]
		c.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		resp, err := http.Get(up)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if int64(len(body)) > c.at {
			body[c.at] ^= 0xff
		}
		w.Write(body)
	}))
	return c
}

func (c *corruptingPublisher) Publish(name, path string) (string, error) {
	u, err := c.Publisher.Publish(name, path)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.urls["/"+name] = u
	c.mu.Unlock()
	return c.proxy + "/" + name, nil
}

func TestDeployImage(t *testing.T) {
	r := newRig(t)
	img := simdisk.Image{OS: "Deployed Linux", Hostname: "deployed", Size: 1 << 20}
	rawImg, err := simdisk.Bytes(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"disk.img", "disk.img.gz", "disk.img.xz"} {
		t.Run(name, func(t *testing.T) {
			os.Remove(r.disk)
			if err := simdisk.WriteFile(filepath.Join(r.jobDir, name), img); err != nil {
				t.Fatal(err)
			}
			src, _ := os.ReadFile(filepath.Join(r.jobDir, name))
			d, err := r.tgt.DeployImage(r.context(), name, "/dev/sda", r.jobDir)
			if err != nil {
				t.Fatalf("DeployImage(%s) = %v", name, err)
			}
			want := Deployed{Disk: "/dev/sda", SHA256: sha(rawImg), Size: int64(len(rawImg)), SourceSHA256: sha(src), SourceSize: int64(len(src)), Duration: d.Duration}
			if diff := cmp.Diff(want, d); diff != "" {
				t.Errorf("DeployImage(%s) mismatch (-want +got):\n%s", name, diff)
			}
			got, err := simdisk.Read(r.disk)
			if err != nil || got.OS != "Deployed Linux" {
				t.Errorf("disk after DeployImage(%s): %v, %v; want a bootable Deployed Linux", name, got, err)
			}
			disk, _ := os.ReadFile(r.disk)
			if !bytes.HasPrefix(disk, rawImg) {
				t.Errorf("disk after DeployImage(%s) does not start with the image", name)
			}
		})
	}
	var phases []string
	for _, e := range r.eventsOf("deploy_progress") {
		phases = append(phases, e["phase"].(string))
	}
	if want := []string{"start", "end", "start", "end", "start", "end"}; !cmp.Equal(phases, want) {
		t.Errorf("deploy_progress phases = %v, want %v", phases, want)
	}
}

func TestDeployImageDetectsCorruption(t *testing.T) {
	var cp *corruptingPublisher
	r := newRig(t)
	cp = newCorruptingPublisher(t, r.pxe, 70000)
	tgt := New(Config{Console: r.con, Publisher: cp, Prompt: testPrompt})
	img := simdisk.Image{Size: 1 << 20}
	rawImg, _ := simdisk.Bytes(img)
	// The raw image's byte 70000 is a zero in the body; gzip's is somewhere
	// in a few KiB stream, so flip an early byte for it.
	r.writeJobFile("disk.img", rawImg)
	_, err := tgt.DeployImage(r.context(), "disk.img", "/dev/sda", r.jobDir)
	var ce *ChecksumError
	if !errors.As(err, &ce) || builtins.ClassOf(err) != builtins.ClassDevice {
		t.Errorf("DeployImage through a corrupting link = %v, want a device *ChecksumError", err)
	}
	cp.at = 200
	var gzbuf bytes.Buffer
	if err := simdisk.WriteCompressed(&gzbuf, img, simdisk.Gzip); err != nil {
		t.Fatal(err)
	}
	r.writeJobFile("disk.img.gz", gzbuf.Bytes())
	if _, err := tgt.DeployImage(r.context(), "disk.img.gz", "/dev/sda", r.jobDir); builtins.ClassOf(err) != builtins.ClassDevice {
		t.Errorf("DeployImage(.gz) through a corrupting link = %v, want a device error", err)
	}
}

func TestDeployImageBadSource(t *testing.T) {
	r := newRig(t)
	img := simdisk.Image{Size: 1 << 20}
	var gzbuf bytes.Buffer
	if err := simdisk.WriteCompressed(&gzbuf, img, simdisk.Gzip); err != nil {
		t.Fatal(err)
	}
	b := gzbuf.Bytes()
	r.writeJobFile("truncated.img.gz", b[:len(b)/2])
	flipped := bytes.Clone(b)
	flipped[len(flipped)-6] ^= 0xff // the CRC32 trailer
	r.writeJobFile("badcrc.img.gz", flipped)
	r.writeJobFile("notxz.img.xz", []byte("plain text"))
	outside := filepath.Join(filepath.Dir(r.jobDir), "outside.img")
	os.WriteFile(outside, []byte("x"), 0o644)
	os.Symlink(outside, filepath.Join(r.jobDir, "link.img"))
	for _, src := range []string{"truncated.img.gz", "badcrc.img.gz", "notxz.img.xz", "missing.img", "../outside.img", "link.img", outside} {
		_, err := r.tgt.DeployImage(r.context(), src, "/dev/sda", r.jobDir)
		if builtins.ClassOf(err) != builtins.ClassJob {
			t.Errorf("DeployImage(%s) = %v, want a job error", src, err)
		}
	}
	if _, err := r.tgt.DeployImage(r.context(), "x.img", "sda", r.jobDir); builtins.ClassOf(err) != builtins.ClassJob {
		t.Errorf("DeployImage(disk=sda) = %v, want a job error", err)
	}
	// Nothing was served for them.
	if n := len(r.eventsOf("deploy_progress")); n != 0 {
		t.Errorf("%d deploy_progress events for refused sources, want 0", n)
	}
}

func TestPush(t *testing.T) {
	r := newRig(t)
	data := randomBytes(t, 200<<10)
	r.writeJobFile("sub/payload.bin", data)
	p, err := r.tgt.Push(r.context(), "sub/payload.bin", "/tmp/payload", r.jobDir)
	if err != nil {
		t.Fatalf("Push = %v", err)
	}
	if want := (Pushed{Dest: "/tmp/payload", SHA256: sha(data), Size: int64(len(data))}); p != want {
		t.Errorf("Push = %+v, want %+v", p, want)
	}
	if got, _ := os.ReadFile(filepath.Join(r.root(), "tmp", "payload")); !bytes.Equal(got, data) {
		t.Errorf("target's /tmp/payload has %d bytes, want the %d pushed", len(got), len(data))
	}
	// A directory destination keeps the name.
	if p, err := r.tgt.Push(r.context(), "sub/payload.bin", "/root/", r.jobDir); err != nil || p.Dest != "/root/payload.bin" {
		t.Errorf("Push to /root/ = %+v, %v, want /root/payload.bin", p, err)
	}
	// A destination the target cannot write is the device's failure.
	if _, err := r.tgt.Push(r.context(), "sub/payload.bin", "/no/such/dir/x", r.jobDir); builtins.ClassOf(err) != builtins.ClassDevice {
		t.Errorf("Push to a missing directory = %v, want a device error", err)
	}
}

func TestPushURL(t *testing.T) {
	r := newRig(t)
	data := []byte(strings.Repeat("from a URL\n", 1000))
	gets := 0
	var mu sync.Mutex
	base := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		gets++
		mu.Unlock()
		http.ServeContent(w, req, "f.txt", time.Time{}, bytes.NewReader(data))
	}))
	for i := 0; i < 2; i++ {
		p, err := r.tgt.Push(r.context(), base+"/files/f.txt", "/tmp/f.txt", r.jobDir)
		if err != nil || p.SHA256 != sha(data) {
			t.Fatalf("Push(URL) = %+v, %v, want sha256 %s", p, err, sha(data))
		}
	}
	if gets != 1 {
		t.Errorf("the URL was downloaded %d times, want 1 (cached)", gets)
	}
	if _, err := New(Config{Console: r.con, Publisher: r.pxe}).Push(r.context(), base+"/f", "/tmp/f", ""); builtins.ClassOf(err) != builtins.ClassInfra {
		t.Errorf("Push(URL) without a cache directory = %v, want an infrastructure error", err)
	}
	if _, err := New(Config{Console: r.con}).Push(r.context(), base+"/f", "/tmp/f", ""); err == nil {
		t.Error("Push without a publisher succeeded")
	}
}

func TestKexec(t *testing.T) {
	r := newRig(t)
	kernel := randomBytes(t, 64<<10)
	var initrd bytes.Buffer
	zw := gzip.NewWriter(&initrd)
	zw.Write([]byte("initramfs"))
	zw.Close()
	r.writeJobFile("vmlinuz", kernel)
	r.writeJobFile("initrd.gz", initrd.Bytes())
	r.run("cd /tmp")
	cmdline := "console=ttyS0,115200 root=/dev/sda1 quiet 'quoted'"
	if err := r.tgt.Kexec(r.context(), "vmlinuz", "initrd.gz", cmdline, "", r.jobDir); err != nil {
		t.Fatalf("Kexec = %v", err)
	}
	select {
	case k := <-r.kexecs:
		if !bytes.Equal(k.kernel, kernel) || !bytes.Equal(k.initrd, initrd.Bytes()) || k.append != cmdline {
			t.Errorf("kexec hook got kernel %d bytes, initrd %d bytes, append %q; want %d, %d, %q",
				len(k.kernel), len(k.initrd), k.append, len(kernel), initrd.Len(), cmdline)
		}
	default:
		t.Fatal("the target's kexec hook was not called")
	}
	// The new system's shell answers, and it is a new one.
	if got := r.run("hostname; pwd").Output; got != "kexeced\n/root\n" {
		t.Errorf("after kexec, hostname; pwd = %q, want \"kexeced\\n/root\\n\"", got)
	}
	// Without anything loaded, kexec -e fails in the old shell: its prompt
	// comes back before any banner.
	if err := r.tgt.Kexec(r.context(), "missing-kernel", "", "", "", r.jobDir); builtins.ClassOf(err) != builtins.ClassJob {
		t.Errorf("Kexec(missing kernel) = %v, want a job error", err)
	}
}
