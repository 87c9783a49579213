package target

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Table is the Starlark module "target". Its backend is a *Target
// set with SetBackend.
var Table = &builtins.Table{
	Name: "target",
	Doc: `The shell of the booted system, through its serial console. Every command is framed by unique markers,
so output and exit status are exact whatever the console echoes or prints meanwhile. Files go to the target
from the dispatcher's HTTP server (wget on the target) and come back from busybox httpd on the target; every
transfer is verified with sha256. Failures on the target are device errors, failures of the dispatcher's
HTTP side infrastructure errors.`,
	Members: []builtins.Builtin{
		{
			Name:   "run",
			Params: "cmd, timeout=None, check=True",
			Doc: `Run cmd in the target's shell and return struct(output, exit_code, raw). output is what the
command printed (stdout and stderr as the console showed them, "\r\n" as "\n") without the kernel messages
("[   12.345678] ...") the console printed meanwhile; raw keeps them (use it for dmesg). With check=True a
non-zero exit status is a device error naming the command and the end of its output. timeout ("30s" or
seconds) can only shorten the stage's deadline; a command still running then is interrupted with ^C and the
call fails with a device error. cmd may span lines; each line must stay under 4000 characters.`,
			Action: true,
			Fn:     runBuiltin,
		},
		{
			Name:   "fetch",
			Params: "path, sha256=None, timeout=None",
			Doc: `Copy the target file at path (absolute) into the result bundle's artifacts/ and return
struct(path, sha256, size), path being the bundle-relative path. The file is first copied on the target
into a directory of this fetch (procfs and sysfs files stat to size 0, and a file may change while read:
the copy is what is served and summed; it takes room in the target's /tmp), then served by a busybox httpd of the fetch's own on a free port
it picks on the target, proven to be its own by a nonce file, downloaded with retries and resumed after a
dropped connection with a Range request; the httpd is killed and the directory removed afterwards, whatever
happened. Whatever else listens on the target (a master image's httpd on port 80) is never used. The file
must have sha256 (hex) if given, else the digest sha256sum computes on the target for the copy; a mismatch,
a missing path, a directory or an unreadable file is a device error naming the path.`,
			Action: true,
			Fn:     fetchBuiltin,
		},
		{
			Name:   "push",
			Params: "src, dest, timeout=None",
			Doc: `Copy src (a path relative to the job's directory, or an http(s) URL: README "Artifacts") to dest
on the target and return struct(dest, sha256, size). The dispatcher serves the file over HTTP, the target runs wget -O dest, and
sha256sum on the target must give the source's digest. A dest ending in "/" receives the file under its
own name.`,
			Action: true,
			Fn:     pushBuiltin,
		},
		{
			Name:   "deploy_image",
			Params: "src, disk, timeout=None",
			Doc: `Write the image src (a path relative to the job's directory, or an http(s) URL: README
"Artifacts") to disk (e.g. "/dev/sda") and return struct(disk, sha256, size, source_sha256, duration_ms). The dispatcher serves it
over HTTP; the target runs wget -O - URL | [gunzip -c | xz -dc, by the extension .gz or .xz] | dd
of=disk bs=1M. The written bytes are then read back on the target (head -c SIZE disk | sha256sum) and must
match the image's decompressed sha256; a mismatch is a device error. sha256 and size describe the
decompressed image.`,
			Action: true,
			Fn:     deployBuiltin,
		},
		{
			Name:   "kexec",
			Params: "kernel, initrd=None, append=\"\", prompt=None, timeout=None",
			Doc: `Boot another kernel with kexec, without a reboot or power cycle: push kernel and initrd (paths
relative to the job's directory or http(s) URLs: README "Artifacts") to /tmp on the target, load them with kexec -l --initrd --append, run
kexec -e and wait for the new kernel's banner, then for prompt (a regular expression; default the device
type's prompt), which later commands then expect. A prompt of the old shell before any banner means kexec failed: a device error.`,
			Action: true,
			Fn:     kexecBuiltin,
		},
		{
			Name:   "ip",
			Params: "timeout=None",
			Doc: `Return the target's IPv4 address: the device fact "ip" if set, else the first address of an
interface other than lo that ip -4 addr show (or ifconfig) reports on the console.`,
			Action: true,
			Fn:     ipBuiltin,
		},
	},
}

// backend returns the thread's target with the device's facts applied.
// slot is the place of the target backend in the job environment.
var slot = builtins.NewSlot[*Target]("target")

// SetBackend makes t the target backend of the run of env (cmd/basalt's
// wire and tests call it); nil removes it.
func SetBackend(env *builtins.Env, t *Target) { slot.Set(env, t) }

// BackendOf returns the target backend of the run of env, if it has one.
func BackendOf(env *builtins.Env) (*Target, bool) { return slot.Get(env) }

// BackendFrom returns the target backend of the thread's run, or the
// error a builtin returns: a job error in a run without a device, an
// infrastructure error for a device without this backend.
func BackendFrom(thread *starlark.Thread) (*Target, error) { return slot.From(thread) }

func backend(thread *starlark.Thread, name string) (*Target, *builtins.Env, error) {
	t, err := BackendFrom(thread)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	env := builtins.EnvOf(thread)
	if env != nil {
		t.SetFacts(env.Facts)
	}
	return t, env, nil
}

func jobDir(env *builtins.Env) string {
	if env == nil {
		return ""
	}
	return env.JobDir
}

func newStruct(fields starlark.StringDict) *starlarkstruct.Struct {
	return starlarkstruct.FromStringDict(starlarkstruct.Default, fields)
}

func runBuiltin(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var cmd string
	var timeout builtins.Timeout
	check := true
	if err := starlark.UnpackArgs(name, args, kwargs, "cmd", &cmd, "timeout?", &timeout, "check?", &check); err != nil {
		return nil, builtins.Job(err)
	}
	if strings.TrimSpace(cmd) == "" {
		return nil, builtins.Job(fmt.Errorf("%s: empty command", name))
	}
	t, _, err := backend(thread, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	res, err := t.Run(ctx, cmd, check)
	if err != nil {
		// Name the timeout= given when it, not the stage, ran out.
		var te *TimeoutError
		if errors.As(err, &te) && timeout.D() > 0 && timeout.D() <= te.Left+time.Second {
			te.Timeout = timeout.D()
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return newStruct(starlark.StringDict{
		"output":    starlark.String(res.Output),
		"exit_code": starlark.MakeInt(res.ExitCode),
		"raw":       starlark.String(res.Raw),
	}), nil
}

func fetchBuiltin(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var p string
	var sum builtins.OptString
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "path", &p, "sha256?", &sum, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	t, env, err := backend(thread, name)
	if err != nil {
		return nil, err
	}
	if env == nil || env.Rec == nil {
		return nil, builtins.Infra(fmt.Errorf("%s: no result bundle to store %s in", name, p))
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()

	// Stream into the bundle: Artifact stores the file only if the copy
	// ends without an error, and Fetch ends it with one on a mismatch.
	artifact := strings.TrimPrefix(path.Clean("/"+p), "/")
	pr, pw := io.Pipe()
	type stored struct {
		rel string
		err error
	}
	done := make(chan stored, 1)
	go func() {
		rel, err := env.Rec.Artifact(artifact, pr, "")
		pr.CloseWithError(errors.Join(err, errStoreEnded))
		done <- stored{rel, err}
	}()
	f, ferr := t.Fetch(ctx, p, string(sum), pw)
	if ferr != nil {
		pw.CloseWithError(ferr)
	} else {
		pw.Close()
	}
	st := <-done
	if ferr != nil {
		return nil, fmt.Errorf("%s: %w", name, ferr)
	}
	if st.err != nil {
		return nil, builtins.Infra(fmt.Errorf("%s: %w", name, st.err))
	}
	return newStruct(starlark.StringDict{
		"path":   starlark.String(st.rel),
		"sha256": starlark.String(f.SHA256),
		"size":   starlark.MakeInt64(f.Size),
	}), nil
}

var errStoreEnded = errors.New("artifact store ended")

func pushBuiltin(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var src, dest string
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "src", &src, "dest", &dest, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	t, env, err := backend(thread, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	p, err := t.Push(ctx, src, dest, jobDir(env))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return newStruct(starlark.StringDict{
		"dest":   starlark.String(p.Dest),
		"sha256": starlark.String(p.SHA256),
		"size":   starlark.MakeInt64(p.Size),
	}), nil
}

func deployBuiltin(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var src, disk string
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "src", &src, "disk", &disk, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	t, env, err := backend(thread, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	d, err := t.DeployImage(ctx, src, disk, jobDir(env))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return newStruct(starlark.StringDict{
		"disk":          starlark.String(d.Disk),
		"sha256":        starlark.String(d.SHA256),
		"size":          starlark.MakeInt64(d.Size),
		"source_sha256": starlark.String(d.SourceSHA256),
		"duration_ms":   starlark.MakeInt64(d.Duration.Milliseconds()),
	}), nil
}

func kexecBuiltin(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var kernel, cmdline string
	var initrd, prompt builtins.OptString
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "kernel", &kernel, "initrd?", &initrd, "append?", &cmdline,
		"prompt?", &prompt, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	t, env, err := backend(thread, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	if err := t.Kexec(ctx, kernel, string(initrd), cmdline, string(prompt), jobDir(env)); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return starlark.None, nil
}

func ipBuiltin(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var timeout builtins.Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "timeout?", &timeout); err != nil {
		return nil, builtins.Job(err)
	}
	t, _, err := backend(thread, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := builtins.CallContext(thread, timeout.D())
	defer cancel()
	ip, err := t.IP(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return starlark.String(ip), nil
}
