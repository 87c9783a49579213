package pxe

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/lab"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Backend is what the Starlark module needs from a PXE server. *Server
// implements it. Rules every implementation keeps:
//   - Serve replaces whatever was served before; only the last Boot's files
//     and configs are reachable.
//   - WaitFetch honours ctx and returns nil only once the named file went
//     out whole.
//   - Stop never fails and may be called when nothing is served.
type Backend interface {
	Serve(ctx context.Context, b Boot) (*Served, error)
	WaitFetch(ctx context.Context, name string) error
	Stop()
}

var _ Backend = (*Server)(nil)

// Table is the Starlark module "pxe".
var Table = &builtins.Table{
	Name: "pxe",
	Doc: `PXE boot of the device: serves this job's kernel, initrd and dtb over TFTP and
HTTP with a config generated in memory for the device's MAC alone (pxelinux
pxelinux.cfg/01-<mac>, an iPXE script, a GRUB config), and optionally
answers the device's PXE ROM with a proxy DHCP (lab.star dhcp = "proxy").

  serve(kernel, initrd=None, append="", dtb=None, mac=None, loader=None, sha256=None, config=True) -> struct
  wait_fetch(name, timeout=None)
  stop()
  publish(name, data) -> url
  wait_request(prefix, timeout=None) -> struct
  leases() -> list`,
	Members: []builtins.Builtin{
		{
			Name:   "serve",
			Params: `kernel, initrd=None, append="", dtb=None, mac=None, loader=None, sha256=None, config=True`,
			Doc: `Serve this job's boot files and stop serving any earlier ones.

kernel, initrd and dtb are paths relative to the job's directory or http(s)
URLs, downloaded once into the lab's cache (README "Artifacts": the one rule
for every job file). sha256 is a dict {"kernel": hex, "initrd": hex, "dtb":
hex} of expected checksums (any subset); a URL's content that differs is an
infrastructure error, a job file's a job error.
mac defaults to the device's boot NIC. loader is pxelinux, ipxe or grub
(default: the device type's loader, else pxelinux); it chooses the boot file
the proxy DHCP hands out; all three configs are served.

The command line is append, plus console=<the device type's kernel console>
when append has no console= of its own, plus basalt.nonce=<nonce>, a fresh
random value per call: finding it in the booted system's /proc/cmdline proves
it booted this job's kernel.

config=False serves the files without any boot config: no pxelinux, iPXE or
GRUB config exists and the proxy DHCP stays silent, so a PXE ROM finds
nothing; for a bootloader driven over the console (@stdlib//uboot.star,
@stdlib//ipxe.star).

Returns struct(nonce, append, config, configs, files, urls, sha256, sizes,
boot_file, tftp, tftp_server, tftp_port, http_url): config is the chosen
loader's config name ("" with config=False); configs, files, urls, sha256 and
sizes are dicts keyed by loader or by role (kernel, initrd, dtb). tftp maps
each role to struct(server, port, path), the TFTP server's address and the
file's path on it, as a bootloader names them (u-boot: serverip, tftpdstp,
"tftpboot ADDR server:path"); urls[role] is the same file over HTTP.
tftp_server and tftp_port are the TFTP server, http_url the HTTP server's
base URL.`,
			Action: true,
			Fn:     serve,
		},
		{
			Name:   "wait_fetch",
			Params: "name, timeout=None",
			Doc: `Wait until the device has fetched name whole, over TFTP or HTTP, since serve().

name is a served name, its last element ("vmlinuz"), a role ("kernel",
"initrd", "dtb") or the path given to serve(). timeout (seconds or a duration
string like "90s") can only shorten the stage's deadline. Not fetched in time
is a device error; a name that is not this job's is a job error.`,
			Action: true,
			Fn:     waitFetch,
		},
		{
			Name:   "stop",
			Params: "",
			Doc:    `Stop serving this job's files and configs; later requests for them get "file not found".`,
			Action: true,
			Fn:     stop,
		},
		{
			Name:   "publish",
			Params: "name, data",
			Doc: `Serve data (a string: a preseed, a kickstart) from memory over HTTP as
files/<name> for the rest of the job, and return its URL; wait_fetch(name)
then waits until the device fetched it whole. Publishing a name again
replaces it.`,
			Action: true,
			Fn:     publish,
		},
		{
			Name:   "wait_request",
			Params: "prefix, timeout=None",
			Doc: `Wait for the first HTTP request of the job whose path (without the leading
"/") starts with prefix, whether basalt had the file or not (an installer
asking for its archive mirror), and return struct(file, status, client).
timeout can only shorten the stage's deadline; none in time is a device error.`,
			Action: true,
			Fn:     waitRequest,
		},
		{
			Name:   "leases",
			Params: "",
			Doc: `The addresses basalt's DHCP server (lab dhcp = "server", or the device's
segment) acknowledged so far, in order: a list of struct(mac, ip,
vendor_class). Empty in the other modes.`,
			Action: true,
			Fn:     leases,
		},
	},
}

func netinstall(thread *starlark.Thread, name string) (Netinstall, error) {
	be, err := backend(thread, name)
	if err != nil {
		return nil, err
	}
	n, ok := be.(Netinstall)
	if !ok {
		return nil, builtins.Infra(fmt.Errorf("%s: the PXE backend %T cannot publish or watch requests", name, be))
	}
	return n, nil
}

func publish(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var file, data string
	if err := starlark.UnpackArgs(name, args, kwargs, "name", &file, "data", &data); err != nil {
		return nil, builtins.Job(err)
	}
	n, err := netinstall(thread, name)
	if err != nil {
		return nil, err
	}
	u, err := n.PublishData(file, []byte(data))
	if err != nil {
		return nil, builtins.Job(fmt.Errorf("%s: %w", name, err))
	}
	return starlark.String(u), nil
}

func waitRequest(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var prefix string
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "prefix", &prefix, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	n, err := netinstall(thread, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	r, err := n.WaitRequest(ctx, prefix)
	if err != nil {
		err = fmt.Errorf("%s: %w", name, err)
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, builtins.Device(err)
	}
	return starlarkstruct.FromStringDict(starlark.String("pxe.request"), starlark.StringDict{
		"file": starlark.String(r.File), "status": starlark.MakeInt(r.Status), "client": starlark.String(r.Client),
	}), nil
}

func leases(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
		return nil, builtins.Job(err)
	}
	n, err := netinstall(thread, name)
	if err != nil {
		return nil, err
	}
	var out []starlark.Value
	for _, l := range n.Leases() {
		out = append(out, starlarkstruct.FromStringDict(starlark.String("pxe.lease"), starlark.StringDict{
			"mac": starlark.String(l.MAC), "ip": starlark.String(l.IP), "vendor_class": starlark.String(l.VendorClass),
		}))
	}
	return starlark.NewList(out), nil
}

// slot is the place of the pxe backend in the job environment.
var slot = builtins.NewSlot[Backend]("pxe")

// SetBackend makes b the pxe backend of the run of env (cmd/basalt's
// wire and tests call it); nil removes it.
func SetBackend(env *builtins.Env, b Backend) { slot.Set(env, b) }

// BackendOf returns the pxe backend of the run of env, if it has one.
func BackendOf(env *builtins.Env) (Backend, bool) { return slot.Get(env) }

// BackendFrom returns the pxe backend of the thread's run, or the
// error a builtin returns: a job error in a run without a device, an
// infrastructure error for a device without this backend.
func BackendFrom(thread *starlark.Thread) (Backend, error) { return slot.From(thread) }

func backend(thread *starlark.Thread, name string) (Backend, error) {
	b, err := BackendFrom(thread)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

func serve(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var kernel string
	var initrd, dtb, mac, loader builtins.OptString
	var app string
	var sums starlark.Value = starlark.None
	config := true
	if err := starlark.UnpackArgs(name, args, kwargs,
		"kernel", &kernel, "initrd?", &initrd, "append?", &app, "dtb?", &dtb,
		"mac?", &mac, "loader?", &loader, "sha256?", &sums, "config?", &config); err != nil {
		return nil, builtins.Job(err)
	}
	env := builtins.EnvOf(thread)
	b := Boot{Kernel: kernel, Initrd: string(initrd), DTB: string(dtb), MAC: string(mac), Loader: string(loader), Append: app, NoConfig: !config}
	if env != nil {
		b.JobDir = env.JobDir
		if d := lab.DeviceOf(env); d != nil {
			if b.MAC == "" {
				b.MAC = d.MAC
			}
			if t := d.Type; t != nil {
				if b.Loader == "" {
					b.Loader = t.Loader
				}
				if t.KernelConsole != "" && !hasConsoleArg(b.Append) {
					b.Append = strings.TrimSpace(b.Append + " console=" + t.KernelConsole)
				}
			}
		}
	}
	if b.MAC == "" {
		return nil, builtins.Job(fmt.Errorf("%s: no mac given and the device has none", name))
	}
	if sums != starlark.None {
		d, ok := sums.(*starlark.Dict)
		if !ok {
			return nil, builtins.Job(fmt.Errorf("%s: sha256 must be a dict like {\"kernel\": \"<hex>\"}, got %s", name, sums.Type()))
		}
		b.SHA256 = map[string]string{}
		for _, kv := range d.Items() {
			k, ok1 := starlark.AsString(kv[0])
			v, ok2 := starlark.AsString(kv[1])
			if !ok1 || !ok2 || (k != "kernel" && k != "initrd" && k != "dtb") {
				return nil, builtins.Job(fmt.Errorf("%s: sha256 keys are kernel, initrd or dtb with hex string values, got %s: %s", name, kv[0], kv[1]))
			}
			b.SHA256[k] = v
		}
	}
	be, err := backend(thread, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, 0)
	defer cancel()
	s, err := be.Serve(ctx, b)
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("%s: %w", name, err))
	}
	return servedValue(s), nil
}

// hasConsoleArg reports whether a command line already sets console=.
func hasConsoleArg(cmdline string) bool {
	for _, f := range strings.Fields(cmdline) {
		if strings.HasPrefix(f, "console=") {
			return true
		}
	}
	return false
}

func strDict(m map[string]string) *starlark.Dict {
	d := starlark.NewDict(len(m))
	for k, v := range m {
		d.SetKey(starlark.String(k), starlark.String(v))
	}
	return d
}

func servedValue(s *Served) starlark.Value {
	sizes := starlark.NewDict(len(s.Sizes))
	for k, v := range s.Sizes {
		sizes.SetKey(starlark.String(k), starlark.MakeInt64(v))
	}
	tftp := starlark.NewDict(len(s.Files))
	for role, path := range s.Files {
		tftp.SetKey(starlark.String(role), starlarkstruct.FromStringDict(starlark.String("pxe.tftp_file"), starlark.StringDict{
			"server": starlark.String(s.TFTPHost),
			"port":   starlark.MakeInt(s.TFTPPort),
			"path":   starlark.String(path),
		}))
	}
	return starlarkstruct.FromStringDict(starlark.String("pxe.served"), starlark.StringDict{
		"tftp":        tftp,
		"tftp_server": starlark.String(s.TFTPHost),
		"tftp_port":   starlark.MakeInt(s.TFTPPort),
		"http_url":    starlark.String(s.HTTPURL),
		"nonce":       starlark.String(s.Nonce),
		"append":      starlark.String(s.Append),
		"mac":         starlark.String(s.MAC),
		"loader":      starlark.String(s.Loader),
		"config":      starlark.String(s.Config),
		"configs":     strDict(s.Configs),
		"files":       strDict(s.Files),
		"urls":        strDict(s.URLs),
		"sha256":      strDict(s.SHA256),
		"sizes":       sizes,
		"boot_file":   starlark.String(s.BootFile),
	})
}

func waitFetch(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var file string
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "name", &file, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	be, err := backend(thread, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	if err := be.WaitFetch(ctx, file); err != nil {
		err = fmt.Errorf("%s: %w", name, err)
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, builtins.Device(err)
	}
	return starlark.None, nil
}

func stop(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(name, args, kwargs); err != nil {
		return nil, builtins.Job(err)
	}
	be, err := backend(thread, name)
	if err != nil {
		return nil, err
	}
	be.Stop()
	return starlark.None, nil
}
