package simshell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// errNotLoopback refuses connections the sim target must not make.
var errNotLoopback = errors.New("network is unreachable from the sim target (only loopback addresses)")

// loopbackClient is the HTTP client of wget: no proxies, no compression,
// no connection reuse, and a dialer that only reaches loopback addresses.
func loopbackClient(headerTimeout time.Duration) *http.Client {
	d := &net.Dialer{
		Timeout: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return errNotLoopback
			}
			return nil
		},
	}
	// Resolve names ourselves so no DNS query leaves the host either.
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		if host == "localhost" {
			host = "127.0.0.1"
		}
		if net.ParseIP(host) == nil {
			return nil, errNotLoopback
		}
		return d.DialContext(ctx, network, net.JoinHostPort(host, port))
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dial,
			DisableCompression:    true,
			DisableKeepAlives:     true,
			ResponseHeaderTimeout: headerTimeout,
		},
	}
}

type wgetOptions struct {
	out     string
	quiet   bool
	resume  bool
	spider  bool
	timeout time.Duration
	agent   string
	headers []string
	prefix  string
	urls    []string
}

func parseWget(c *call) (*wgetOptions, error) {
	o := &wgetOptions{timeout: 900 * time.Second, agent: "Wget"}
	args := c.args
	next := func(i *int, name string) (string, error) {
		if *i+1 >= len(args) {
			return "", fmt.Errorf("option requires an argument -- '%s'", name)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "--") {
			if err := o.long(k, v); err != nil {
				return nil, err
			}
			continue
		}
		switch a {
		case "--quiet":
			o.quiet = true
			continue
		case "--continue":
			o.resume = true
			continue
		case "--spider":
			o.spider = true
			continue
		case "--no-check-certificate", "--server-response", "--no-verbose":
			continue
		case "--output-document", "--timeout", "--user-agent", "--header", "--directory-prefix":
			v, err := next(&i, a)
			if err != nil {
				return nil, err
			}
			if err := o.long(a, v); err != nil {
				return nil, err
			}
			continue
		}
		if len(a) < 2 || a[0] != '-' {
			o.urls = append(o.urls, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			switch f := a[j]; f {
			case 'q':
				o.quiet = true
			case 'c':
				o.resume = true
			case 's':
				o.spider = true
			case 'S':
			case 'O', 'T', 'U', 'P', 'Y':
				v := a[j+1:]
				if v == "" {
					var err error
					if v, err = next(&i, string(f)); err != nil {
						return nil, err
					}
				}
				long := map[byte]string{'O': "--output-document", 'T': "--timeout", 'U': "--user-agent", 'P': "--directory-prefix", 'Y': "--proxy"}[f]
				if err := o.long(long, v); err != nil {
					return nil, err
				}
				j = len(a)
			default:
				return nil, fmt.Errorf("invalid option -- '%c'", f)
			}
		}
	}
	if len(o.urls) == 0 {
		return nil, errors.New("missing URL")
	}
	return o, nil
}

// long sets the long option k ("--timeout") to v.
func (o *wgetOptions) long(k, v string) error {
	switch k {
	case "--output-document":
		o.out = v
	case "--timeout":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("invalid number '%s'", v)
		}
		if n > 0 {
			o.timeout = time.Duration(n) * time.Second
		}
	case "--user-agent":
		o.agent = v
	case "--header":
		o.headers = append(o.headers, v)
	case "--directory-prefix":
		o.prefix = v
	case "--proxy":
	default:
		return fmt.Errorf("unrecognized option '%s'", k)
	}
	return nil
}

// cmdWget fetches URLs over real HTTP like busybox wget: -O FILE or -O -,
// -q, -c (resume with a Range request), -T, -U, --header, --spider.
func cmdWget(c *call) error {
	o, err := parseWget(c)
	if err != nil {
		return c.fail("%v", err)
	}
	client := loopbackClient(o.timeout)
	for _, raw := range o.urls {
		if err := c.wget(client, o, raw); err != nil {
			return err
		}
	}
	return nil
}

func (c *call) wget(client *http.Client, o *wgetOptions, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return c.fail("bad address '%s'", raw)
	}
	if u.Scheme != "http" {
		return c.fail("not an http url: %s", raw)
	}
	out := o.out
	if out == "" {
		out = path.Base(u.Path)
		if out == "/" || out == "." || out == "" {
			out = "index.html"
		}
		if o.prefix != "" {
			out = path.Join(o.prefix, out)
		}
	}
	if !o.quiet {
		fmt.Fprintf(c.stderr, "Connecting to %s (%s)\n", u.Host, u.Host)
	}
	method := http.MethodGet
	if o.spider {
		method = http.MethodHead
	}
	req, err := http.NewRequestWithContext(c.ctx, method, u.String(), nil)
	if err != nil {
		return c.fail("bad address '%s'", raw)
	}
	req.Header.Set("User-Agent", o.agent)
	for _, h := range o.headers {
		if k, v, ok := strings.Cut(h, ":"); ok {
			req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	var have int64
	if o.resume && out != "-" && !o.spider {
		if fi, err := c.stat(out); err == nil && fi.Mode().IsRegular() {
			have = fi.Size()
		}
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
	}
	fields := map[string]any{"url": u.Redacted(), "method": method}
	resp, err := client.Do(req)
	if err != nil {
		fields["error"] = err.Error()
		c.sh.emit("sim.wget", fields)
		if c.ctx.Err() != nil {
			return c.ctx.Err()
		}
		return c.fail("can't connect to remote host (%s): %s", u.Hostname(), dialText(err))
	}
	defer resp.Body.Close()
	fields["status"] = resp.StatusCode
	switch {
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		// The file is already complete.
		fields["bytes"] = 0
		c.sh.emit("sim.wget", fields)
		return nil
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent:
		c.sh.emit("sim.wget", fields)
		return c.fail("server returned error: %s %s", resp.Proto, resp.Status)
	}
	if o.spider {
		c.sh.emit("sim.wget", fields)
		return nil
	}
	var w io.Writer = c.stdout
	if out == "-" {
		if !o.quiet {
			fmt.Fprintln(c.stderr, "writing to stdout")
		}
	} else {
		flag := os.O_TRUNC
		if resp.StatusCode == http.StatusPartialContent && have > 0 {
			flag = os.O_APPEND
			fields["resumed_from"] = have
		} else {
			have = 0
		}
		f, err := c.create(out, flag)
		if err != nil {
			return c.fail("can't open '%s': %s", out, errnoText(err))
		}
		defer f.Close()
		w = f
		if !o.quiet {
			fmt.Fprintf(c.stderr, "saving to '%s'\n", out)
		}
	}
	n, err := io.Copy(w, ctxReader{c.ctx, resp.Body})
	fields["bytes"] = n
	if err != nil {
		fields["error"] = err.Error()
	}
	c.sh.emit("sim.wget", fields)
	switch {
	case c.ctx.Err() != nil:
		return c.ctx.Err()
	case errors.Is(err, syscall.EPIPE):
		return err
	case err != nil && isWriteErr(err, w):
		return c.fail("write error: %s", errnoText(err))
	case err != nil:
		return c.fail("connection closed prematurely")
	}
	if !o.quiet {
		name := out
		if name == "-" {
			name = "-"
		}
		fmt.Fprintf(c.stderr, "%-20s 100%% |%s| %s  0:00:00 ETA\n", path.Base(name), strings.Repeat("*", 32), humanDecimal(float64(have+n)))
		if out == "-" {
			fmt.Fprintln(c.stderr, "written to stdout")
		} else {
			fmt.Fprintf(c.stderr, "'%s' saved\n", out)
		}
	}
	return nil
}

// dialText is the errno text of a failed connection.
func dialText(err error) string {
	if errors.Is(err, errNotLoopback) {
		return "Network is unreachable"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errnoText(errno)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "Connection timed out"
	}
	return err.Error()
}

// bindHost is where the target's servers listen: Config.IP when it is a
// loopback address, else 127.0.0.1.
func (s *Shell) bindHost() string {
	if ip := net.ParseIP(s.cfg.IP); ip != nil && ip.IsLoopback() {
		return s.cfg.IP
	}
	return "127.0.0.1"
}

// cmdHttpd is busybox httpd: -p [ADDR:]PORT (default 80), -h HOME (default
// the current directory), -f to stay in the foreground, -v to log requests.
// It serves HOME inside the target's filesystem with net/http, Range
// requests included, until the shell stops.
func cmdHttpd(c *call) error {
	o, _, err := c.getopt("fvip:h:u:r:c:m:e:d:")
	if err != nil {
		return err
	}
	if o.has('i') {
		return c.fail("inetd mode is not supported")
	}
	host, port := c.sh.bindHost(), o.val('p', "80")
	if h, p, ok := strings.Cut(port, ":"); ok && strings.LastIndex(port, ":") == strings.Index(port, ":") {
		ip := net.ParseIP(h)
		if ip == nil || !ip.IsLoopback() && h != c.sh.cfg.IP {
			return c.fail("bind: Cannot assign requested address")
		}
		if ip.IsLoopback() {
			host = h
		}
		port = p
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return c.fail("invalid port '%s'", port)
	}
	home := c.abs(o.val('h', "."))
	if fi, err := c.sh.fs.stat(home, true); err != nil || !fi.IsDir() {
		return c.fail("can't change directory to '%s'", o.val('h', "."))
	}
	sub, err := fs.Sub(c.sh.fs.root.FS(), rel(home))
	if err != nil {
		return c.fail("can't change directory to '%s'", o.val('h', "."))
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return c.fail("bind: %s", dialText(err))
	}
	addr := ln.Addr().String()
	h := &httpdHandler{sh: c.sh, files: http.FileServerFS(pseudoFS{sub, home})}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	c.sh.mu.Lock()
	c.sh.servers[srv] = struct{}{}
	c.sh.mu.Unlock()
	c.sh.emit("sim.httpd", map[string]any{"event": "start", "addr": addr, "home": home})
	c.sh.log.Info("httpd started", "addr", addr, "home", home)
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
		c.sh.mu.Lock()
		delete(c.sh.servers, srv)
		c.sh.mu.Unlock()
		c.sh.emit("sim.httpd", map[string]any{"event": "stop", "addr": addr})
	}()
	if !o.has('f') {
		return nil // daemonized: it runs until the shell stops
	}
	select {
	case <-c.ctx.Done():
		srv.Close()
		<-served
		return c.ctx.Err()
	case <-served:
		return nil
	}
}

type httpdHandler struct {
	sh    *Shell
	files http.Handler
}

func (h *httpdHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(rec, "501 Not Implemented", http.StatusNotImplemented)
	} else {
		h.files.ServeHTTP(rec, r)
	}
	fields := map[string]any{"method": r.Method, "path": r.URL.Path, "status": rec.status, "bytes": rec.n, "remote": r.RemoteAddr}
	if rg := r.Header.Get("Range"); rg != "" {
		fields["range"] = rg
	}
	h.sh.emit("sim.httpd", fields)
}

type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// netInfo returns the interface addresses of eth0.
func (s *Shell) netInfo() (ip net.IP, prefix int, bcast string) {
	ip = net.ParseIP(s.cfg.IP).To4()
	if ip == nil {
		ip = net.IPv4(127, 0, 0, 1).To4()
	}
	prefix = 24
	if ip[0] == 127 {
		prefix = 8
	}
	mask := net.CIDRMask(prefix, 32)
	b := make(net.IP, 4)
	for i := range b {
		b[i] = ip[i] | ^mask[i]
	}
	return ip, prefix, b.String()
}

// cmdIP is `ip addr`, `ip link` and `ip route` for lo and eth0.
func cmdIP(c *call) error {
	var family string
	args := c.args
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-4", "-6":
			family = args[0]
		case "-o", "-oneline", "-br", "-brief", "-s":
		case "-f", "-family":
			if len(args) > 1 {
				family = "-" + strings.TrimPrefix(strings.TrimPrefix(args[1], "inet"), "6")
				args = args[1:]
			}
		default:
			return c.fail("invalid option \"%s\"", args[0])
		}
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(c.stderr, "Usage: ip [OPTIONS] address|route|link ...")
		return exitCode(1)
	}
	obj, args := args[0], args[1:]
	dev := ""
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "show", "list", "ls":
		case "dev":
			if i+1 < len(args) {
				dev = args[i+1]
				i++
			}
		default:
			dev = args[i]
		}
	}
	if dev != "" && dev != "lo" && dev != "eth0" {
		fmt.Fprintf(c.stderr, "ip: can't find device '%s'\n", dev)
		return exitCode(1)
	}
	ip, prefix, bcast := c.sh.netInfo()
	switch {
	case strings.HasPrefix("address", obj) || obj == "addr" || obj == "a":
		if dev == "" || dev == "lo" {
			fmt.Fprintln(c.stdout, "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN qlen 1000")
			if family != "-4" {
				fmt.Fprintln(c.stdout, "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00")
			}
			if family != "-6" {
				fmt.Fprintln(c.stdout, "    inet 127.0.0.1/8 scope host lo\n       valid_lft forever preferred_lft forever")
			}
		}
		if dev == "" || dev == "eth0" {
			fmt.Fprintln(c.stdout, "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP qlen 1000")
			if family != "-4" {
				fmt.Fprintf(c.stdout, "    link/ether %s brd ff:ff:ff:ff:ff:ff\n", c.sh.cfg.MAC)
			}
			if family != "-6" {
				fmt.Fprintf(c.stdout, "    inet %s/%d brd %s scope global eth0\n       valid_lft forever preferred_lft forever\n", ip, prefix, bcast)
			}
		}
	case strings.HasPrefix("link", obj) || obj == "l":
		if dev == "" || dev == "lo" {
			fmt.Fprintln(c.stdout, "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN qlen 1000\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00")
		}
		if dev == "" || dev == "eth0" {
			fmt.Fprintf(c.stdout, "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP qlen 1000\n    link/ether %s brd ff:ff:ff:ff:ff:ff\n", c.sh.cfg.MAC)
		}
	case strings.HasPrefix("route", obj) || obj == "r":
		network := &net.IPNet{IP: ip.Mask(net.CIDRMask(prefix, 32)), Mask: net.CIDRMask(prefix, 32)}
		fmt.Fprintf(c.stdout, "%s dev eth0 scope link  src %s\n", network, ip)
	default:
		fmt.Fprintf(c.stderr, "ip: unknown object '%s'\n", obj)
		return exitCode(1)
	}
	return nil
}

func cmdIfconfig(c *call) error {
	dev := ""
	for _, a := range c.args {
		if a != "-a" {
			dev = a
			break
		}
	}
	if dev != "" && dev != "lo" && dev != "eth0" {
		return c.fail("%s: error fetching interface information: Device not found", dev)
	}
	ip, prefix, bcast := c.sh.netInfo()
	mask := net.IP(net.CIDRMask(prefix, 32)).String()
	if dev == "" || dev == "eth0" {
		fmt.Fprintf(c.stdout, "eth0      Link encap:Ethernet  HWaddr %s  \n"+
			"          inet addr:%s  Bcast:%s  Mask:%s\n"+
			"          UP BROADCAST RUNNING MULTICAST  MTU:1500  Metric:1\n"+
			"          RX packets:0 errors:0 dropped:0 overruns:0 frame:0\n"+
			"          TX packets:0 errors:0 dropped:0 overruns:0 carrier:0\n"+
			"          collisions:0 txqueuelen:1000 \n"+
			"          RX bytes:0 (0.0 B)  TX bytes:0 (0.0 B)\n\n", strings.ToUpper(c.sh.cfg.MAC), ip, bcast, mask)
	}
	if dev == "" || dev == "lo" {
		fmt.Fprint(c.stdout, "lo        Link encap:Local Loopback  \n"+
			"          inet addr:127.0.0.1  Mask:255.0.0.0\n"+
			"          UP LOOPBACK RUNNING  MTU:65536  Metric:1\n"+
			"          RX packets:0 errors:0 dropped:0 overruns:0 frame:0\n"+
			"          TX packets:0 errors:0 dropped:0 overruns:0 carrier:0\n"+
			"          collisions:0 txqueuelen:1000 \n"+
			"          RX bytes:0 (0.0 B)  TX bytes:0 (0.0 B)\n\n")
	}
	return nil
}
