package target

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
	"github.com/basalt-lab/basalt/runtime/artifact"
	"github.com/ulikunitz/xz"
)

// compression is the format of an image, by the extension of its name.
type compression int

const (
	raw compression = iota
	gz
	xzc
)

func compressionOf(name string) compression {
	switch strings.ToLower(path.Ext(name)) {
	case ".gz", ".tgz", ".gzip":
		return gz
	case ".xz", ".txz":
		return xzc
	}
	return raw
}

// decompressCmd is the target's filter for c, "" for none.
func (c compression) decompressCmd() string {
	switch c {
	case gz:
		return "gunzip -c"
	case xzc:
		return "xz -dc"
	}
	return ""
}

// digest is what the dispatcher knows of a source after reading it once.
type digest struct {
	SHA256    string // of the file as served
	Size      int64
	RawSHA256 string // of the decompressed content (= SHA256 when raw)
	RawSize   int64
}

// source is a push or deploy source resolved to a dispatcher file.
type source struct {
	src  string // as the job gave it
	path string // the dispatcher file to publish
	base string // its name, for served names and messages
	comp compression
	d    *digest
}

// resolve finds src for param (a path under jobDir or an http(s) URL
// downloaded into CacheDir, by the rules of package artifact: README
// "Artifacts") and digests it, reading it at most once per content:
// digests are cached by the file's identity (path, size, mtime) and by its
// sha256. With image, a .gz or .xz source is an image to decompress on the
// target, and its decompressed content is digested too; otherwise the file
// goes over as it is. Errors name param.
func (t *Target) resolve(ctx context.Context, param, src, jobDir string, image bool) (*source, error) {
	c := &artifact.Cache{Dir: t.cfg.CacheDir, Client: t.cfg.HTTPClient, Retries: t.cfg.HTTPRetries, Emit: t.cfg.Emit, Log: t.log}
	f, err := artifact.Open(ctx, c, jobDir, src, "")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", param, err)
	}
	defer f.Close()
	s := &source{src: src, path: f.Path, base: artifact.Base(src)}
	if image {
		s.comp = compressionOf(s.base)
	}
	if s.d, err = t.digestOf(f.File, s.path, s.comp); err != nil {
		return nil, builtins.Job(fmt.Errorf("%s: %s: %w", param, src, err))
	}
	return s, nil
}

// digestOf returns the digest of f, computing the sha256 and the size of
// its content and, for a compressed file, of its decompressed content in
// one read. A file that does not decompress is an error.
func (t *Target) digestOf(f *os.File, name string, comp compression) (*digest, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	statKey := fmt.Sprintf("%s|%d|%d|%d", name, st.Size(), st.ModTime().UnixNano(), comp)
	t.cacheMu.Lock()
	if key, ok := t.byStat[statKey]; ok {
		if d, ok := t.digests[key]; ok {
			t.cacheMu.Unlock()
			return d, nil
		}
	}
	t.cacheMu.Unlock()

	d, err := computeDigest(f, comp)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%s|%d", d.SHA256, comp)
	t.cacheMu.Lock()
	t.byStat[statKey] = key
	t.digests[key] = d
	t.cacheMu.Unlock()
	return d, nil
}

// computeDigest reads r once: the source hash sees every byte, and the
// decompressor reads the same bytes on their way.
func computeDigest(r io.Reader, comp compression) (*digest, error) {
	hs := sha256.New()
	cr := &countReader{r: r}
	tee := io.TeeReader(bufio.NewReaderSize(cr, 1<<20), hs)
	d := &digest{}
	if comp == raw {
		n, err := io.Copy(io.Discard, tee)
		if err != nil {
			return nil, err
		}
		d.Size, d.RawSize = n, n
		d.SHA256 = hex.EncodeToString(hs.Sum(nil))
		d.RawSHA256 = d.SHA256
		return d, nil
	}
	var dr io.Reader
	switch comp {
	case gz:
		zr, err := gzip.NewReader(tee)
		if err != nil {
			return nil, fmt.Errorf("gunzip: %w", err)
		}
		dr = zr
	case xzc:
		zr, err := xz.NewReader(tee)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		dr = zr
	}
	hr := sha256.New()
	n, err := io.Copy(hr, dr)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // trailing bytes
		return nil, err
	}
	d.SHA256 = hex.EncodeToString(hs.Sum(nil))
	d.Size = cr.n
	d.RawSHA256 = hex.EncodeToString(hr.Sum(nil))
	d.RawSize = n
	return d, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// safeName keeps a served name to letters, digits, '.', '_' and '-'.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	s = strings.TrimLeft(string(b), ".")
	if len(s) > 64 {
		s = s[len(s)-64:]
	}
	if s == "" {
		s = "file"
	}
	return s
}

// publish serves s and returns its URL and a function that stops serving it.
func (t *Target) publish(s *source) (string, func(), error) {
	if t.cfg.Publisher == nil {
		return "", nil, builtins.Infra(errors.New("no HTTP server (pxe backend) to serve files to the target"))
	}
	name := "target/" + s.d.SHA256[:16] + "-" + safeName(s.base)
	u, err := t.cfg.Publisher.Publish(name, s.path)
	if err != nil {
		return "", nil, builtins.Infra(fmt.Errorf("serve %s: %w", s.src, err))
	}
	if !artifact.IsURL(u) {
		t.cfg.Publisher.Unpublish(name)
		return "", nil, builtins.Infra(fmt.Errorf("serve %s: the HTTP server gave %q, not a URL (is it started?)", s.src, u))
	}
	return u, func() { t.cfg.Publisher.Unpublish(name) }, nil
}

// Pushed is a file pushed to the target.
type Pushed struct {
	Dest   string
	SHA256 string
	Size   int64
}

// Push copies src (a path under jobDir or an http(s) URL) to dest on the
// target: the dispatcher serves it over HTTP, the target runs
// `wget -O DEST URL`, and `sha256sum DEST` on the target must give the
// source's sha256 (else a *ChecksumError, class device). A dest ending in
// "/" is a directory that receives the file under its own name.
func (t *Target) Push(ctx context.Context, src, dest, jobDir string) (Pushed, error) {
	if dest == "" {
		return Pushed{}, builtins.Job(errors.New("empty destination"))
	}
	s, err := t.resolve(ctx, "src", src, jobDir, false)
	if err != nil {
		return Pushed{}, err
	}
	if strings.HasSuffix(dest, "/") {
		dest += safeName(s.base)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.push(ctx, s, dest)
}

// push runs the transfer of a resolved source. t.mu is held.
func (t *Target) push(ctx context.Context, s *source, dest string) (Pushed, error) {
	u, unpublish, err := t.publish(s)
	if err != nil {
		return Pushed{}, err
	}
	defer unpublish()
	start := time.Now()
	if _, err := t.run(ctx, "wget -q -O "+shellQuote(dest)+" "+shellQuote(u), true); err != nil {
		return Pushed{}, fmt.Errorf("push %s to %s: %w", s.src, dest, err)
	}
	got, err := t.targetSum(ctx, "sha256sum "+shellQuote(dest))
	if err != nil {
		return Pushed{}, fmt.Errorf("push %s to %s: %w", s.src, dest, err)
	}
	if got != s.d.SHA256 {
		return Pushed{}, builtins.Device(&ChecksumError{What: "pushed " + dest, Got: got, Want: s.d.SHA256})
	}
	t.emit("target_push", map[string]any{"src": s.src, "dest": dest, "bytes": s.d.Size, "sha256": got, "duration_ms": time.Since(start).Milliseconds()})
	return Pushed{Dest: dest, SHA256: got, Size: s.d.Size}, nil
}

// targetSum runs a command printing a sha256sum line and returns the digest.
func (t *Target) targetSum(ctx context.Context, cmd string) (string, error) {
	res, err := t.run(ctx, cmd, true)
	if err != nil {
		return "", err
	}
	f := strings.Fields(res.Output)
	if len(f) == 0 || !isSHA256(f[0]) {
		return "", builtins.Device(fmt.Errorf("%s printed %q, want a sha256 digest", cmd, tail(res.Output, 200)))
	}
	return strings.ToLower(f[0]), nil
}

// Deployed is an image written to a target disk.
type Deployed struct {
	Disk         string
	SHA256       string // of the bytes written (the decompressed image)
	Size         int64  // bytes written
	SourceSHA256 string // of the file served
	SourceSize   int64
	Duration     time.Duration
}

// DeployImage writes src (a path under jobDir or an http(s) URL; .gz and
// .xz are decompressed on the target) to disk: the dispatcher serves it
// over HTTP and the target runs `wget -O - URL | [gunzip -c | xz -dc] | dd
// of=DISK bs=1M`. The dispatcher knows the image's decompressed sha256
// and size N from one read of the source; `head -c N DISK | sha256sum`
// on the target must give the same digest (else a *ChecksumError, class
// device). Events "deploy_progress" mark the start and the end with bytes
// and duration.
func (t *Target) DeployImage(ctx context.Context, src, disk, jobDir string) (Deployed, error) {
	if !path.IsAbs(disk) {
		return Deployed{}, builtins.Job(fmt.Errorf("disk %q: want a device path such as /dev/sda", disk))
	}
	s, err := t.resolve(ctx, "src", src, jobDir, true)
	if err != nil {
		return Deployed{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u, unpublish, err := t.publish(s)
	if err != nil {
		return Deployed{}, err
	}
	defer unpublish()
	start := time.Now()
	t.emit("deploy_progress", map[string]any{"phase": "start", "src": s.src, "disk": disk, "bytes": int64(0), "total": s.d.Size, "size": s.d.RawSize})
	cmd := "wget -q -O - " + shellQuote(u)
	if dc := s.comp.decompressCmd(); dc != "" {
		cmd += " | " + dc
	}
	cmd += " | dd of=" + shellQuote(disk) + " bs=1M && sync"
	if _, err := t.run(ctx, cmd, true); err != nil {
		t.emit("deploy_progress", map[string]any{"phase": "failed", "src": s.src, "disk": disk, "duration_ms": time.Since(start).Milliseconds()})
		return Deployed{}, fmt.Errorf("write %s to %s: %w", s.src, disk, err)
	}
	written := time.Since(start)
	got, err := t.targetSum(ctx, fmt.Sprintf("head -c %d %s | sha256sum", s.d.RawSize, shellQuote(disk)))
	if err != nil {
		return Deployed{}, fmt.Errorf("verify %s: %w", disk, err)
	}
	if got != s.d.RawSHA256 {
		t.emit("deploy_progress", map[string]any{"phase": "failed", "src": s.src, "disk": disk, "duration_ms": time.Since(start).Milliseconds()})
		return Deployed{}, builtins.Device(&ChecksumError{What: fmt.Sprintf("first %d bytes of %s after writing %s", s.d.RawSize, disk, s.src), Got: got, Want: s.d.RawSHA256})
	}
	d := Deployed{Disk: disk, SHA256: got, Size: s.d.RawSize, SourceSHA256: s.d.SHA256, SourceSize: s.d.Size, Duration: time.Since(start)}
	fields := map[string]any{"phase": "end", "src": s.src, "disk": disk, "bytes": s.d.Size, "total": s.d.Size, "size": s.d.RawSize,
		"sha256": got, "duration_ms": d.Duration.Milliseconds(), "write_ms": written.Milliseconds()}
	if secs := written.Seconds(); secs > 0 {
		fields["rate_bytes_per_s"] = int64(float64(s.d.RawSize) / secs)
	}
	t.emit("deploy_progress", fields)
	return d, nil
}

// kexecBanner is what a kexec'd kernel shows first: kexec's own message,
// or the new kernel's banner if the console saw nothing before it.
var kexecBanner = expect.MustRegexp(`Starting new kernel|Linux version [^ \r\n]+`)

// Kexec boots another kernel without a reboot or power cycle: it pushes
// kernel and initrd (paths under jobDir or URLs; initrd may be "") to /tmp
// on the target, loads them with `kexec -l K --initrd=I --append=...`,
// types `kexec -e` and waits for the new kernel's banner, then for prompt
// (a regular expression; "" uses Config.Prompt), which is the prompt Run
// waits for from then on. A prompt of the old shell before the banner
// means kexec -e failed (class device).
func (t *Target) Kexec(ctx context.Context, kernel, initrd, cmdline, prompt, jobDir string) error {
	var custom *expect.Pattern
	if prompt != "" {
		p, err := expect.Regexp(prompt)
		if err != nil {
			return builtins.Job(fmt.Errorf("prompt: %w", err))
		}
		custom = &p
	}
	ks, err := t.resolve(ctx, "kernel", kernel, jobDir, false)
	if err != nil {
		return err
	}
	var is *source
	if initrd != "" {
		if is, err = t.resolve(ctx, "initrd", initrd, jobDir, false); err != nil {
			return err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	newPrompt := t.prompt
	if custom != nil {
		newPrompt = custom
	}
	kdest := "/tmp/basalt-kexec-kernel"
	if _, err := t.push(ctx, ks, kdest); err != nil {
		return err
	}
	load := "kexec -l " + kdest
	if is != nil {
		idest := "/tmp/basalt-kexec-initrd"
		if _, err := t.push(ctx, is, idest); err != nil {
			return err
		}
		load += " --initrd=" + idest
	}
	load += " --append=" + shellQuote(cmdline)
	if _, err := t.run(ctx, load, true); err != nil {
		return err
	}
	start := time.Now()
	c := t.cfg.Console
	c.SetMode(sol.ModeShell)
	if err := c.SendLine(ctx, "kexec -e", sol.SendOptions{}); err != nil {
		return fmt.Errorf("type kexec -e: %w", err)
	}
	t.ip = "" // the new system may bring up another address
	pats := []expect.Pattern{kexecBanner}
	if t.prompt != nil {
		pats = append(pats, *t.prompt)
	}
	m, err := c.Expect(ctx, pats...)
	if err != nil {
		return fmt.Errorf("wait for the new kernel: %w", err)
	}
	if m.Index == 1 {
		return builtins.Device(fmt.Errorf("kexec -e did not start the new kernel; the shell said: %s", tail(output(m.Before, nil), 300)))
	}
	if newPrompt != nil {
		if _, err := c.Expect(ctx, *newPrompt); err != nil {
			return fmt.Errorf("new kernel booted but no shell prompt: %w", err)
		}
	}
	t.prompt = newPrompt
	t.emit("target_kexec", map[string]any{"kernel": ks.src, "kernel_sha256": ks.d.SHA256, "append": cmdline, "duration_ms": time.Since(start).Milliseconds()})
	return nil
}
