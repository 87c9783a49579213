package pxe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/artifact"
	"github.com/basalt-lab/basalt/runtime/lab"
	"github.com/pin/tftp/v3"
)

// DefaultLoaderDir is where Debian's pxelinux, syslinux-common and ipxe
// packages install the bootloader binaries, searched in this order (the
// lab's default).
var DefaultLoaderDir = lab.DefaultLoaderDir

// Config configures a Server. Its zero value serves TFTP and HTTP on free
// loopback ports with Debian's bootloaders and no proxy DHCP.
type Config struct {
	// TFTPAddr and HTTPAddr are the listen addresses; default "127.0.0.1:0".
	TFTPAddr string
	HTTPAddr string
	// LoaderDir lists directories holding bootloader binaries, separated by
	// ':' (pxelinux.0 and ldlinux.c32 live in different Debian packages).
	// Default DefaultLoaderDir. Files are looked up confined to each
	// directory with os.Root and never copied anywhere.
	LoaderDir string
	// CacheDir is the artifact cache (package artifact) for URL boot
	// files, shared with target. Without it, URLs cannot be served.
	CacheDir string
	// DHCP is "none" (default; the site DHCP server points at us) or
	// "proxy" (answer PXE clients of the job's MAC, ports 67 and 4011).
	DHCP string
	// DHCPInterface is the interface the proxy or server DHCP binds to.
	DHCPInterface string
	// DHCPPort overrides port 67 (tests); the PXE boot-server port 4011 is
	// DHCPPort+3944 when set, else 4011; server mode watches DHCPPort+1
	// for other servers' answers.
	DHCPPort int
	// Server mode (DHCP "server"): the addresses leased, the subnet
	// (default the interface's prefix holding the range), router and DNS
	// servers handed out, the lease time (default 1h), and the MACs
	// leased to besides the served job's (the device's boot NIC).
	DHCPRange  lab.DHCPRange
	DHCPSubnet netip.Prefix
	DHCPRouter netip.Addr
	DHCPDNS    []netip.Addr
	DHCPLease  time.Duration
	DHCPMACs   []string
	// SocketsIn, when set, runs fn where the server's sockets belong (a
	// network namespace's Exec, runtime/qemu.NetNS): Start opens its
	// listeners there, and the sockets opened later (one per TFTP
	// transfer) are opened there too.
	SocketsIn func(fn func() error) error
	// RouterAdvertisements makes server mode send IPv6 router
	// advertisements that configure nothing (ra.go), so iPXE does not wait
	// ~16 s for one. LabConfig sets it for dhcp = "server".
	RouterAdvertisements bool
	// TFTPTimeout is the wait for one TFTP acknowledgement before a resend;
	// default 1s. TFTPRetries is the number of resends; default 10.
	TFTPTimeout time.Duration
	TFTPRetries int
	// Anticipate, when > 1, makes the TFTP server send this many blocks
	// before waiting for an acknowledgement to clients that do not ask for
	// a window themselves (RFC 7440 windowsize, which is always honoured).
	// Default 0: strict lock-step, which every PXE ROM understands.
	Anticipate uint
	// DownloadRetries is go-retryablehttp's RetryMax for URL boot files;
	// default 4.
	DownloadRetries int
	// Emit receives events (tftp, http, dhcp, pxe_serve, pxe_refused, and
	// package artifact's artifact_download, artifact_cached, artifact_resume).
	// nil discards them.
	Emit func(typ string, fields map[string]any)
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
}

// Boot is what one job asks to be booted.
type Boot struct {
	// Kernel, Initrd and DTB are paths relative to JobDir or http(s) URLs,
	// resolved by package artifact.
	// Initrd and DTB are optional.
	Kernel, Initrd, DTB string
	// SHA256 optionally maps "kernel", "initrd" or "dtb" to the expected
	// sha256 (hex) of that file.
	SHA256 map[string]string
	// Append is the kernel command line; basalt.nonce=<nonce> is added.
	Append string
	// MAC is the boot NIC of the target; only its config is served.
	MAC string
	// Loader is pxelinux (default), ipxe or grub: the boot file the proxy
	// DHCP hands out. All three configs are generated either way.
	Loader string
	// JobDir is the directory relative paths are resolved in.
	JobDir string
	// NoConfig serves the files without any boot config: no pxelinux, iPXE
	// or GRUB config exists and the proxy DHCP answers nobody, so a PXE ROM
	// finds nothing to boot. For targets whose bootloader is driven over
	// the console (u-boot's tftpboot, iPXE's kernel/initrd lines).
	NoConfig bool
}

// Served says what Serve published.
type Served struct {
	Nonce  string // also on the kernel command line as basalt.nonce=
	MAC    string
	Loader string
	// Config is the config name of the chosen loader; Configs has all of
	// them by loader ("pxelinux", "ipxe", "grub").
	Config  string
	Configs map[string]string
	// Files maps "kernel", "initrd", "dtb" to the served name (TFTP path,
	// also the HTTP path), URLs the same roles plus "ipxe" and "grub" to
	// HTTP URLs.
	Files  map[string]string
	URLs   map[string]string
	SHA256 map[string]string
	Sizes  map[string]int64
	Append string
	// BootFile is what the proxy DHCP hands a non-iPXE client.
	BootFile string
	// TFTPHost and TFTPPort are the TFTP server as a bootloader names it
	// (u-boot's serverip and tftpdstp); HTTPURL is the HTTP server's base
	// URL. Files[role] is the path on both.
	TFTPHost string
	TFTPPort int
	HTTPURL  string
	// NoConfig is Boot.NoConfig: Configs is empty.
	NoConfig bool
}

// Server serves the PXE boot of one job at a time over TFTP and HTTP, and
// optionally answers PXE clients with a proxy DHCP.
type Server struct {
	cfg     Config
	log     *slog.Logger
	loaders []*os.Root
	absent  []string        // loader directories that do not exist
	warned  map[string]bool // loader names already warned about

	tftp     *tftp.Server
	tftpConn net.PacketConn
	// tftpFront answers the requests too long for pin/tftp (tftpfront.go).
	tftpFront *tftpFront
	xfers     sync.WaitGroup // read requests being served (tftpsend.go)
	httpLn    net.Listener
	httpSrv   *http.Server
	dhcp      *proxyDHCP
	dhcpSrv   *serverDHCP
	ra        *routerAdverts
	done      sync.WaitGroup

	mu      sync.Mutex
	started bool
	closed  bool
	// jobs holds the boot being served in each scope: "" is the Server's
	// own (Serve, WaitFetch, Stop); a multi-device job's roles each have
	// one (Scope), so one server serves every role's MAC at once.
	jobs      map[string]*job
	published map[string]string // HTTP name -> path
	// Netinstall (publish.go): data published from memory, whether each
	// went out whole, the HTTP requests seen, the leases given.
	pubData    map[string][]byte
	pubFetched map[string]bool
	requests   []Request
	leases     []Lease
	reqChanged chan struct{}
	opts       map[string]map[string]string
}

// job is the state of the boot being served.
type job struct {
	served  *Served
	mac     net.HardwareAddr
	files   map[string]*served // by served name
	fetched map[string]bool    // served names fetched whole
	changed chan struct{}      // closed and replaced on every fetch
}

// served is one file of a job: a config in memory or an open artifact.
type served struct {
	role string
	data []byte   // configs
	f    *os.File // artifacts
	size int64
}

func (f *served) reader() io.ReadSeeker {
	if f.f != nil {
		return io.NewSectionReader(f.f, 0, f.size)
	}
	return bytes.NewReader(f.data)
}

// NewServer returns a server for cfg; Start makes it listen.
func NewServer(cfg Config) *Server {
	if cfg.TFTPAddr == "" {
		cfg.TFTPAddr = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.LoaderDir == "" {
		cfg.LoaderDir = DefaultLoaderDir
	}
	if cfg.DHCP == "" {
		cfg.DHCP = "none"
	}
	if cfg.TFTPTimeout <= 0 {
		cfg.TFTPTimeout = time.Second
	}
	if cfg.TFTPRetries <= 0 {
		cfg.TFTPRetries = 10
	}
	if cfg.DownloadRetries <= 0 {
		cfg.DownloadRetries = 4
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, published: map[string]string{}, opts: map[string]map[string]string{}}
}

// Start opens the TFTP and HTTP listeners (and the proxy DHCP when
// configured) and serves until Close. ctx bounds only the start-up.
func (s *Server) Start(ctx context.Context) error {
	return s.socketsIn(func() error { return s.start(ctx) })
}

func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("pxe: server already started")
	}
	if s.cfg.DHCP != "none" && s.cfg.DHCP != "proxy" && s.cfg.DHCP != "server" {
		return fmt.Errorf("pxe: dhcp mode %q, want none, proxy or server", s.cfg.DHCP)
	}
	if s.cfg.DHCP != "none" {
		// Before anything listens: a wrong interface is the lab's
		// problem, named, before the device is powered on.
		if _, _, err := dhcpInterface(s.cfg.DHCPInterface); err != nil {
			return fmt.Errorf("pxe: %s dhcp: %w", s.cfg.DHCP, err)
		}
	}
	for _, d := range filepath.SplitList(s.cfg.LoaderDir) {
		r, err := os.OpenRoot(d)
		if errors.Is(err, fs.ErrNotExist) {
			// The default list names every Debian package's directory,
			// and a target whose firmware loads the kernel itself (the
			// sim, u-boot) needs none: a missing one is worth a warning
			// only when a target asks for a loader (open).
			s.log.Debug("pxe loader directory absent", "dir", d)
			s.absent = append(s.absent, d)
			continue
		}
		if err != nil {
			s.log.Warn("pxe loader directory unusable", "dir", d, "err", err)
			continue
		}
		s.loaders = append(s.loaders, r)
	}
	var lc net.ListenConfig
	pc, front, err := listenTFTP(ctx, s, s.cfg.TFTPAddr)
	if err != nil {
		s.closeLoaders()
		return fmt.Errorf("pxe: listen tftp %s: %w", s.cfg.TFTPAddr, err)
	}
	ln, err := lc.Listen(ctx, "tcp", s.cfg.HTTPAddr)
	if err != nil {
		pc.Close()
		front.close()
		s.closeLoaders()
		return fmt.Errorf("pxe: listen http %s: %w", s.cfg.HTTPAddr, err)
	}
	ts := tftp.NewServer(s.tftpRead, nil)
	ts.SetTimeout(s.cfg.TFTPTimeout)
	ts.SetRetries(s.cfg.TFTPRetries)
	// The default backoff sleeps up to a second after every timeout, on top
	// of the timeout itself; a lost block should cost one timeout only.
	ts.SetBackoff(func(int) time.Duration { return 0 })
	ts.SetHook(tftpHook{s})
	if s.cfg.Anticipate > 1 {
		ts.SetAnticipate(s.cfg.Anticipate)
	}
	s.tftp, s.tftpConn, s.tftpFront, s.httpLn = ts, pc, front, ln
	s.httpSrv = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 10 * time.Second}

	if s.cfg.DHCP == "proxy" {
		d, err := s.startDHCP()
		if err != nil {
			pc.Close()
			front.close()
			ln.Close()
			s.closeLoaders()
			return fmt.Errorf("pxe: proxy dhcp: %w", err)
		}
		s.dhcp = d
	}
	if s.cfg.DHCP == "server" {
		d, err := s.startServerDHCP()
		if err != nil {
			pc.Close()
			front.close()
			ln.Close()
			s.closeLoaders()
			return fmt.Errorf("pxe: dhcp server: %w", err)
		}
		s.dhcpSrv = d
		if s.cfg.RouterAdvertisements {
			r, err := s.startRA(s.cfg.DHCPInterface)
			if err != nil {
				// iPXE boots regardless, ~16 s later.
				s.log.Warn("pxe: no router advertisements; iPXE will wait for IPv6", "err", err)
			} else {
				s.ra = r
			}
		}
	}
	s.done.Add(3)
	go func() {
		defer s.done.Done()
		ts.Serve(&rrqConn{PacketConn: pc, s: s})
	}()
	go func() {
		defer s.done.Done()
		front.serve()
	}()
	go func() {
		defer s.done.Done()
		s.httpSrv.Serve(ln)
	}()
	s.started = true
	s.log.Info("pxe listening", "tftp", pc.LocalAddr().String(), "http", ln.Addr().String(), "dhcp", s.cfg.DHCP)
	return nil
}

// socketsIn runs fn where Config.SocketsIn says, else here.
func (s *Server) socketsIn(fn func() error) error {
	if s.cfg.SocketsIn != nil {
		return s.cfg.SocketsIn(fn)
	}
	return fn()
}

func (s *Server) closeLoaders() {
	for _, r := range s.loaders {
		r.Close()
	}
	s.loaders = nil
}

// TFTPAddr returns the TFTP listen address (host:port) once started.
func (s *Server) TFTPAddr() string {
	if s.tftpConn == nil {
		return ""
	}
	return s.tftpConn.LocalAddr().String()
}

// HTTPURL returns the base URL of the HTTP server ("http://127.0.0.1:8080").
func (s *Server) HTTPURL() string {
	if s.httpLn == nil {
		return ""
	}
	return "http://" + s.httpLn.Addr().String()
}

func (s *Server) emit(typ string, fields map[string]any) {
	if s.cfg.Emit != nil {
		s.cfg.Emit(typ, fields)
	}
}

// Serve stops serving any previous job and serves b: its kernel, initrd and
// dtb under a per-job directory named by a fresh nonce, and the pxelinux,
// iPXE and GRUB configs generated for b.MAC alone.
func (s *Server) Serve(ctx context.Context, b Boot) (*Served, error) { return s.serveIn("", ctx, b) }

// Scoped is the server as one device of a multi-device job sees it: its
// Serve replaces only what this scope served, its WaitFetch and Stop
// concern only that; the other scopes' boots are served alongside (each
// for its own MAC, its files under its own nonce).
type Scoped struct {
	*Server
	key string
}

// Scope returns the server as seen by scope key (a role); "" is the
// Server's own.
func (s *Server) Scope(key string) *Scoped { return &Scoped{Server: s, key: key} }

// Serve serves b in the scope, replacing what the scope served before.
func (c *Scoped) Serve(ctx context.Context, b Boot) (*Served, error) { return c.serveIn(c.key, ctx, b) }

// WaitFetch waits for a file of the scope's boot.
func (c *Scoped) WaitFetch(ctx context.Context, name string) error {
	return c.waitFetchIn(c.key, ctx, name)
}

// Stop stops serving the scope's boot.
func (c *Scoped) Stop() { c.stopIn(c.key) }

var _ Backend = (*Scoped)(nil)

func (s *Server) serveIn(scope string, ctx context.Context, b Boot) (*Served, error) {
	if !s.isStarted() {
		return nil, builtins.Infra(errors.New("server not started"))
	}
	mac, err := net.ParseMAC(b.MAC)
	if err != nil || len(mac) != 6 {
		return nil, builtins.Job(fmt.Errorf("mac %q is not an Ethernet MAC address", b.MAC))
	}
	if b.Kernel == "" {
		return nil, builtins.Job(errors.New("no kernel given"))
	}
	loader := b.Loader
	if loader == "" {
		loader = "pxelinux"
	}
	bootFile, ok := map[string]string{"pxelinux": "pxelinux.0", "ipxe": "undionly.kpxe", "grub": "grubnetx64.efi"}[loader]
	if !ok {
		return nil, builtins.Job(fmt.Errorf("loader %q, want pxelinux, ipxe or grub", loader))
	}
	nonceBytes := make([]byte, 8)
	rand.Read(nonceBytes)
	nonce := hex.EncodeToString(nonceBytes)

	j := &job{
		mac:     mac,
		files:   map[string]*served{},
		fetched: map[string]bool{},
		changed: make(chan struct{}),
	}
	out := &Served{
		Nonce: nonce, MAC: mac.String(), Loader: loader, BootFile: bootFile,
		Configs: map[string]string{}, Files: map[string]string{}, URLs: map[string]string{},
		SHA256: map[string]string{}, Sizes: map[string]int64{},
		HTTPURL: s.HTTPURL(), NoConfig: b.NoConfig,
	}
	if ta, ok := s.tftpConn.LocalAddr().(*net.UDPAddr); ok {
		out.TFTPHost, out.TFTPPort = ta.IP.String(), ta.Port
	}
	j.served = out
	var arts []*artifact.File
	closeAll := func() {
		for _, a := range arts {
			a.Close()
		}
	}
	bases := map[string]bool{}
	for _, r := range []struct{ role, src string }{{"kernel", b.Kernel}, {"initrd", b.Initrd}, {"dtb", b.DTB}} {
		if r.src == "" {
			continue
		}
		a, err := s.resolve(ctx, r.role, r.src, b.JobDir, b.SHA256[r.role])
		if err != nil {
			closeAll()
			return nil, err
		}
		arts = append(arts, a)
		base := artifact.Base(r.src)
		if _, err := ValidName(base); err != nil || bases[base] {
			base = r.role
		}
		bases[base] = true
		name := nonce + "/" + base
		j.files[name] = &served{role: r.role, f: a.File, size: a.Size}
		out.Files[r.role] = name
		out.URLs[r.role] = s.HTTPURL() + "/" + name
		out.SHA256[r.role] = a.SHA256
		out.Sizes[r.role] = a.Size
	}
	app := strings.TrimSpace(b.Append + " basalt.nonce=" + nonce)
	out.Append = app
	bf := bootFiles{
		Kernel: out.Files["kernel"], Initrd: out.Files["initrd"], DTB: out.Files["dtb"],
		KernelURL: out.URLs["kernel"], InitrdURL: out.URLs["initrd"], DTBURL: out.URLs["dtb"],
		Append: app,
	}
	macDash := strings.ReplaceAll(mac.String(), ":", "-")
	configs := []struct {
		loader, name string
		data         []byte
	}{
		{"pxelinux", MACConfigName(mac), pxelinuxConfig(bf)},
		{"ipxe", nonce + "/boot.ipxe", ipxeScript(bf)},
		// GRUB's net lookup: grub.cfg-01-<mac> in its prefix directory.
		{"grub", "grub/grub.cfg-01-" + macDash, grubConfig(bf, s.httpLn.Addr().String())},
	}
	if b.NoConfig {
		configs = nil
	}
	for _, c := range configs {
		j.files[c.name] = &served{role: c.loader + "_config", data: c.data, size: int64(len(c.data))}
		out.Configs[c.loader] = c.name
		out.URLs[c.loader] = s.HTTPURL() + "/" + c.name
	}
	out.Config = out.Configs[loader]

	s.mu.Lock()
	if s.jobs == nil {
		s.jobs = map[string]*job{}
	}
	old := s.jobs[scope]
	s.jobs[scope] = j
	s.mu.Unlock()
	old.close()

	files := map[string]any{}
	for k, v := range out.Files {
		files[k] = v
	}
	s.emit("pxe_serve", map[string]any{
		"mac": out.MAC, "loader": loader, "nonce": nonce, "config": out.Config, "no_config": b.NoConfig,
		"files": files, "sha256": out.SHA256, "sizes": out.Sizes, "append": app,
		// The rest of what pxe.serve returned, for basalt replay.
		"configs": out.Configs, "urls": out.URLs, "boot_file": out.BootFile,
		"tftp_host": out.TFTPHost, "tftp_port": out.TFTPPort, "http_url": out.HTTPURL,
	})
	s.log.Info("pxe serving", "mac", out.MAC, "loader", loader, "nonce", nonce, "config", out.Config)
	return out, nil
}

func (j *job) close() {
	if j == nil {
		return
	}
	for _, f := range j.files {
		if f.f != nil {
			f.f.Close()
		}
	}
}

func (s *Server) isStarted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started && !s.closed
}

// Stop stops serving the current job; the listeners stay open. Requests for
// its files get "file not found" from now on.
func (s *Server) Stop() { s.stopIn("") }

func (s *Server) stopIn(scope string) {
	s.mu.Lock()
	j := s.jobs[scope]
	delete(s.jobs, scope)
	s.mu.Unlock()
	j.close()
}

// jobFor returns the job served to mac in any scope, or nil. The caller
// holds s.mu.
func (s *Server) jobFor(mac net.HardwareAddr) *job {
	for _, j := range s.jobs {
		if slices.Equal(j.mac, mac) {
			return j
		}
	}
	return nil
}

// fileOf returns the job of any scope that serves name, and the file. The
// caller holds s.mu.
func (s *Server) fileOf(name string) (*job, *served) {
	for _, j := range s.jobs {
		if f, ok := j.files[name]; ok {
			return j, f
		}
	}
	return nil, nil
}

// WaitFetch returns nil once the target has fetched name whole (over TFTP
// or HTTP) since Serve, or ctx's error. name is a served name
// ("<nonce>/vmlinuz", "pxelinux.cfg/01-..."), its last element
// ("vmlinuz"), a role ("kernel", "initrd", "dtb") or the kernel/initrd/dtb
// argument given to Serve.
func (s *Server) WaitFetch(ctx context.Context, name string) error {
	return s.waitFetchIn("", ctx, name)
}

func (s *Server) waitFetchIn(scope string, ctx context.Context, name string) error {
	if _, ok := s.publishedData(strings.TrimPrefix(name, PublishPrefix)); ok {
		return s.waitPublished(ctx, strings.TrimPrefix(name, PublishPrefix))
	}
	s.mu.Lock()
	j := s.jobs[scope]
	s.mu.Unlock()
	if j == nil {
		return builtins.Job(errors.New("nothing is being served"))
	}
	target, ok := j.match(name)
	if !ok {
		return builtins.Job(fmt.Errorf("%q is not a file of this job (serving %s)", name, strings.Join(j.names(), ", ")))
	}
	for {
		s.mu.Lock()
		done := j.fetched[target]
		ch := j.changed
		cur := s.jobs[scope]
		s.mu.Unlock()
		if done {
			return nil
		}
		if cur != j {
			return builtins.Job(fmt.Errorf("stopped serving while waiting for %s", target))
		}
		select {
		case <-ch:
		case <-ctx.Done():
			err := fmt.Errorf("target did not fetch %s: %w", target, ctx.Err())
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return builtins.Device(err)
			}
			return err // canceled: neither the device's fault nor ours
		}
	}
}

func (j *job) match(name string) (string, bool) {
	if _, ok := j.files[name]; ok {
		return name, true
	}
	if n, ok := j.served.Files[name]; ok {
		return n, true
	}
	for role, n := range j.served.Files {
		if strings.HasSuffix(n, "/"+name) {
			return n, true
		}
		_ = role
	}
	for _, n := range j.served.Configs {
		if strings.HasSuffix(n, "/"+name) {
			return n, true
		}
	}
	return "", false
}

func (j *job) names() []string {
	var out []string
	for n := range j.files {
		out = append(out, n)
	}
	return out
}

// Close stops every listener, waits for transfers in flight and closes the
// job's files. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed || !s.started {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	jobs := s.jobs
	s.jobs = nil
	s.mu.Unlock()
	var errs []error
	if s.dhcp != nil {
		errs = append(errs, s.dhcp.close())
	}
	if s.dhcpSrv != nil {
		errs = append(errs, s.dhcpSrv.close())
	}
	if s.ra != nil {
		errs = append(errs, s.ra.close())
	}
	errs = append(errs, s.httpSrv.Close())
	s.tftp.Shutdown()
	s.tftpFront.close()
	s.done.Wait()
	s.xfers.Wait() // after Serve has returned: no Add can race the Wait
	for _, j := range jobs {
		j.close()
	}
	s.closeLoaders()
	return errors.Join(errs...)
}

// open finds name for a transfer: a file of the current job, else a
// bootloader binary. The caller closes the returned closer (may be nil).
func (s *Server) open(name string) (io.ReadSeeker, int64, io.Closer, string, error) {
	s.mu.Lock()
	_, f := s.fileOf(name)
	s.mu.Unlock()
	if f != nil {
		return f.reader(), f.size, nil, f.role, nil
	}
	if kind, _ := ParseConfigName(name); kind != NotConfig {
		// Another MAC's config, the UUID/IP/default steps of pxelinux's
		// lookup, or anything else under pxelinux.cfg/: nothing.
		return nil, 0, nil, "config_" + kind.String(), errNotFound
	}
	for _, r := range s.loaders {
		lf, err := r.Open(name)
		if err != nil {
			continue
		}
		st, err := lf.Stat()
		if err != nil || !st.Mode().IsRegular() {
			lf.Close()
			continue
		}
		return io.NewSectionReader(lf, 0, st.Size()), st.Size(), lf, "loader", nil
	}
	if isLoaderName(name) {
		s.missingLoader(name)
		return nil, 0, nil, "loader", errNotFound
	}
	return nil, 0, nil, "", errNotFound
}

// isLoaderName reports whether a target asking for name wants a bootloader
// from the loader directories: the boot files Serve hands out and
// syslinux's modules, which pxelinux fetches next to itself.
func isLoaderName(name string) bool {
	switch path.Base(name) {
	case "pxelinux.0", "lpxelinux.0", "undionly.kpxe", "ipxe.efi", "snponly.efi", "grubnetx64.efi":
		return true
	}
	return strings.HasSuffix(name, ".c32")
}

// missingLoader warns, once per name, that a target asked for a loader no
// loader directory has: the lab's real missing-loader problem.
func (s *Server) missingLoader(name string) {
	s.mu.Lock()
	if s.warned == nil {
		s.warned = map[string]bool{}
	}
	first := !s.warned[name]
	s.warned[name] = true
	absent := append([]string(nil), s.absent...)
	s.mu.Unlock()
	if first {
		s.log.Warn("pxe loader not found: a target asked for it and no loader directory has it",
			"file", name, "loader_dir", s.cfg.LoaderDir, "absent_dirs", strings.Join(absent, string(filepath.ListSeparator)))
	}
}

// markFetched records that name was transferred whole and wakes WaitFetch.
func (s *Server) markFetched(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, _ := s.fileOf(name)
	if j == nil {
		return
	}
	j.fetched[name] = true
	close(j.changed)
	j.changed = make(chan struct{})
}

// refused records a refused name.
func (s *Server) refused(proto, client, name string, err error) {
	reason := "invalid"
	var re *RefusedError
	if errors.As(err, &re) {
		reason = re.Reason
	}
	s.log.Warn("pxe refused file name", "proto", proto, "client", client, "file", clip(name), "reason", reason)
	s.emit("pxe_refused", map[string]any{"proto": proto, "client": client, "file": clip(name), "reason": reason})
}

// LabConfig returns the Config a lab asks for (lab.star's TFTP and HTTP
// addresses, DHCP mode and interface, loader and cache directories); the
// caller adds Emit and Log.
func LabConfig(l *lab.Lab) Config {
	if l == nil {
		return Config{}
	}
	c := Config{
		TFTPAddr: l.TFTPAddr, HTTPAddr: l.HTTPAddr, DHCP: l.DHCP, DHCPInterface: l.DHCPInterface,
		LoaderDir: l.LoaderDir, CacheDir: l.CacheDir, DHCPLease: l.DHCPLease,
		RouterAdvertisements: l.DHCP == "server",
	}
	// Checked when the lab was read; a bad value here stays unset and
	// Start says so.
	c.DHCPRange, _ = lab.ParseDHCPRange(l.DHCPRange)
	c.DHCPSubnet, _ = netip.ParsePrefix(l.DHCPSubnet)
	c.DHCPRouter, _ = netip.ParseAddr(l.DHCPRouter)
	for _, a := range l.DHCPDNS {
		if ip, err := netip.ParseAddr(a); err == nil {
			c.DHCPDNS = append(c.DHCPDNS, ip)
		}
	}
	return c
}
