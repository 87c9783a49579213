package replay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/ipmi"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/target"
	"github.com/basalt-lab/basalt/runtime/bundle"
)

// Controller is the ipmi.Controller of a replay: each method answers with
// the outcome of the recorded call the job is in (ipmi.*, or power.* on a
// BMC), after checking that it is the same action.
func (s *Session) Controller() ipmi.Controller { return controller{s} }

type controller struct{ s *Session }

func (c controller) Power(ctx context.Context, a ipmi.Action) error {
	call, err := c.s.current("power "+string(a), "ipmi.power", "power."+string(a))
	if err != nil {
		return err
	}
	if call.Str("builtin") == "ipmi.power" {
		if args := strs(call.Fields["args"]); len(args) == 0 || args[0] != strconv.Quote(string(a)) {
			c.s.mu.Lock()
			defer c.s.mu.Unlock()
			return c.s.diverge(Divergence{Seq: call.Seq, Expected: callString("ipmi.power", call.Fields["args"]), Got: "ipmi.power(" + strconv.Quote(string(a)) + ")"})
		}
	}
	return recordedError(call)
}

func (c controller) PowerStatus(ctx context.Context) (bool, error) {
	call, err := c.s.current("a power status", "ipmi.power_status", "power.status", "ipmi.wait_power", "power.wait")
	if err != nil {
		return false, err
	}
	if err := recordedError(call); err != nil {
		return false, err
	}
	switch call.Str("builtin") {
	case "ipmi.wait_power", "power.wait":
		args := strs(call.Fields["args"])
		return len(args) > 0 && args[0] == `"on"`, nil
	}
	r, _ := call.Fields["result"].(string)
	return r == "on", nil
}

func (c controller) SetBootDevice(ctx context.Context, d ipmi.Device, o ipmi.BootOptions) error {
	call, err := c.s.current("ipmi.bootdev("+strconv.Quote(string(d))+")", "ipmi.bootdev")
	if err != nil {
		return err
	}
	if args := strs(call.Fields["args"]); len(args) == 0 || args[0] != strconv.Quote(string(d)) {
		c.s.mu.Lock()
		defer c.s.mu.Unlock()
		return c.s.diverge(Divergence{Seq: call.Seq, Expected: callString("ipmi.bootdev", call.Fields["args"]), Got: "ipmi.bootdev(" + strconv.Quote(string(d)) + ")"})
	}
	return recordedError(call)
}

func (controller) Close() error { return nil }

// PXE is the pxe.Backend of a replay: serve returns what the recorded
// pxe.serve returned (its pxe_serve event), wait_fetch the recorded
// outcome.
func (s *Session) PXE() pxe.Backend { return pxeBackend{s} }

type pxeBackend struct{ s *Session }

func (p pxeBackend) Serve(ctx context.Context, b pxe.Boot) (*pxe.Served, error) {
	call, err := p.s.current("pxe.serve", "pxe.serve")
	if err != nil {
		return nil, err
	}
	if err := recordedError(call); err != nil {
		return nil, err
	}
	evs := p.s.rec.between("pxe_serve", p.s.prevCallSeq(call), call.Seq)
	if len(evs) == 0 {
		return nil, builtins.Job(fmt.Errorf("replay: events.jsonl has no pxe_serve event for the pxe.serve at %s (seq %d)", call.Str("pos"), call.Seq))
	}
	ev := evs[len(evs)-1]
	num := func(k string) int64 {
		n, _ := strconv.ParseInt(fmt.Sprint(ev.Fields[k]), 10, 64)
		return n
	}
	out := &pxe.Served{Nonce: ev.Str("nonce"), MAC: ev.Str("mac"), Loader: ev.Str("loader"), Config: ev.Str("config"),
		Configs: strMap(ev.Fields["configs"]), Files: strMap(ev.Fields["files"]), URLs: strMap(ev.Fields["urls"]),
		SHA256: strMap(ev.Fields["sha256"]), Sizes: map[string]int64{}, Append: ev.Str("append"), BootFile: ev.Str("boot_file"),
		TFTPHost: ev.Str("tftp_host"), TFTPPort: int(num("tftp_port")), HTTPURL: ev.Str("http_url")}
	out.NoConfig, _ = ev.Fields["no_config"].(bool)
	if m, ok := ev.Fields["sizes"].(map[string]any); ok {
		for k, v := range m {
			n, _ := strconv.ParseInt(fmt.Sprint(v), 10, 64)
			out.Sizes[k] = n
		}
	}
	return out, nil
}

func (p pxeBackend) WaitFetch(ctx context.Context, name string) error {
	call, err := p.s.current("pxe.wait_fetch("+strconv.Quote(name)+")", "pxe.wait_fetch")
	if err != nil {
		return err
	}
	return recordedError(call)
}

func (pxeBackend) Stop() {}

var _ pxe.Netinstall = pxeBackend{}

// PublishData returns the URL the recorded pxe.publish returned.
func (p pxeBackend) PublishData(name string, data []byte) (string, error) {
	call, err := p.s.current("pxe.publish("+strconv.Quote(name)+")", "pxe.publish")
	if err != nil {
		return "", err
	}
	if err := recordedError(call); err != nil {
		return "", err
	}
	u, _ := call.Fields["result"].(string)
	return u, nil
}

// WaitRequest returns the first recorded HTTP request for prefix made
// before the recorded pxe.wait_request returned.
func (p pxeBackend) WaitRequest(ctx context.Context, prefix string) (pxe.Request, error) {
	call, err := p.s.current("pxe.wait_request("+strconv.Quote(prefix)+")", "pxe.wait_request")
	if err != nil {
		return pxe.Request{}, err
	}
	if err := recordedError(call); err != nil {
		return pxe.Request{}, err
	}
	for _, ev := range p.s.rec.between("http", 0, call.Seq) {
		if strings.HasPrefix(ev.Str("file"), prefix) {
			code, _ := strconv.Atoi(fmt.Sprint(ev.Fields["status"]))
			return pxe.Request{Proto: "http", File: ev.Str("file"), Client: ev.Str("client"), Status: code}, nil
		}
	}
	return pxe.Request{}, builtins.Job(fmt.Errorf("replay: events.jsonl has no HTTP request for %s* before the pxe.wait_request at %s", prefix, call.Str("pos")))
}

// Leases returns the leases recorded (dhcp_lease events) before the
// recorded pxe.leases returned.
func (p pxeBackend) Leases() []pxe.Lease {
	call, err := p.s.current("pxe.leases()", "pxe.leases")
	if err != nil {
		return nil
	}
	var out []pxe.Lease
	for _, ev := range p.s.rec.between("dhcp_lease", 0, call.Seq) {
		out = append(out, pxe.Lease{MAC: ev.Str("mac"), IP: ev.Str("ip"), VendorClass: ev.Str("vendor_class")})
	}
	return out
}

func strMap(v any) map[string]string {
	out := map[string]string{}
	m, _ := v.(map[string]any)
	for k, x := range m {
		if s, ok := x.(string); ok {
			out[k] = s
		}
	}
	return out
}

// prevCallSeq is the seq of the recorded aligned call before c (0 for
// the first).
func (s *Session) prevCallSeq(c bundle.Event) int64 {
	var prev int64
	for _, x := range s.rec.Calls {
		if x.Seq >= c.Seq {
			break
		}
		prev = x.Seq
	}
	return prev
}

// Publisher is the target's file server in a replay: it gives the URL the
// recording gave for the same name (its publish events).
func (s *Session) Publisher() target.Publisher { return publisher{s} }

type publisher struct{ s *Session }

func (p publisher) Publish(name, path string) (string, error) {
	for _, ev := range p.s.rec.Events {
		if ev.Type == "publish" && ev.Str("name") == name {
			return ev.Str("url"), nil
		}
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	return "", p.s.diverge(Divergence{Expected: "a file the recording published", Got: "publishing " + name + ", which it did not"})
}

func (publisher) Unpublish(string) {}

// HTTPClient is the dispatcher's HTTP client of a replay's target.fetch:
// the target's httpd answers from the recording — the nonce the job typed
// and the fetched file stored in the bundle's artifacts/.
func (s *Session) HTTPClient() *http.Client {
	return &http.Client{Transport: fetchTransport{s}, Timeout: time.Minute}
}

type fetchTransport struct{ s *Session }

var nonceLine = regexp.MustCompile(`echo ([0-9a-f]+) > \S*basalt-fetch-\S*/nonce`)

func (f fetchTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s := f.s
	if strings.HasSuffix(req.URL.Path, "/nonce") {
		s.mu.Lock()
		nonce := ""
		for i := len(s.sent) - 1; i >= 0 && nonce == ""; i-- {
			if m := nonceLine.FindStringSubmatch(s.sent[i]); m != nil {
				nonce = m[1]
			}
		}
		s.mu.Unlock()
		return respond(req, http.StatusOK, strings.NewReader(nonce+"\n")), nil
	}
	call, err := s.current("target.fetch", "target.fetch")
	if err != nil {
		return nil, err
	}
	evs := s.rec.between("target_fetch", s.prevCallSeq(call), call.Seq)
	if len(evs) == 0 {
		return respond(req, http.StatusNotFound, strings.NewReader("not in the recording\n")), nil
	}
	sum := evs[len(evs)-1].Str("sha256")
	for _, a := range s.rec.Result.Artifacts {
		if a.SHA256 != sum {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.rec.Dir, filepath.FromSlash(a.Path)))
		if err != nil {
			return nil, fmt.Errorf("replay: %s: %w", a.Path, err)
		}
		rec := &memResponse{h: http.Header{}}
		http.ServeContent(rec, req, a.Name, time.Time{}, bytes.NewReader(data))
		return rec.response(req), nil
	}
	if sum == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" { // an empty file
		return respond(req, http.StatusOK, strings.NewReader("")), nil
	}
	return nil, fmt.Errorf("replay: artifacts/ has no file with sha256 %s, which target.fetch at %s fetched (the bundle was edited)", sum, call.Str("pos"))
}

func respond(req *http.Request, code int, body io.Reader) *http.Response {
	data, _ := io.ReadAll(body)
	return &http.Response{StatusCode: code, Status: http.StatusText(code), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Length": {strconv.Itoa(len(data))}}, Body: io.NopCloser(bytes.NewReader(data)),
		ContentLength: int64(len(data)), Request: req}
}

// memResponse is an http.ResponseWriter kept in memory.
type memResponse struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (m *memResponse) Header() http.Header { return m.h }
func (m *memResponse) WriteHeader(code int) {
	if m.code == 0 {
		m.code = code
	}
}
func (m *memResponse) Write(p []byte) (int, error) {
	if m.code == 0 {
		m.code = http.StatusOK
	}
	return m.body.Write(p)
}

func (m *memResponse) response(req *http.Request) *http.Response {
	if m.code == 0 {
		m.code = http.StatusOK
	}
	return &http.Response{StatusCode: m.code, Status: strconv.Itoa(m.code) + " " + http.StatusText(m.code), Proto: "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1, Header: m.h, Body: io.NopCloser(bytes.NewReader(m.body.Bytes())),
		ContentLength: int64(m.body.Len()), Request: req}
}
