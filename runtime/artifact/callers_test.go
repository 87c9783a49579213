package artifact_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/target"
	"github.com/basalt-lab/basalt/runtime/interp"
	"go.starlark.net/starlark"
)

// TestCallersRefuseAlike: basalt check and every builtin that takes a job
// file refuse the same paths with the same words, as job errors naming the
// parameter and the path. (pxe once accepted an absolute path inside the
// job directory, and pxe and target took "ftp://..." for a file name.)
func TestCallersRefuseAlike(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job")
	os.MkdirAll(job, 0o755)
	os.WriteFile(filepath.Join(job, "vmlinuz"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("outside"), 0o644)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(job, "out"))
	jobFile := filepath.Join(job, "job.star")
	os.WriteFile(jobFile, []byte(`
job(name = "refuse", params = {"kernel": "vmlinuz"})
def s(ctx):
    pass
stage("s", s)
`), 0o644)

	ctx := context.Background()
	srv := pxe.NewServer(pxe.Config{LoaderDir: dir, CacheDir: filepath.Join(dir, "cache")})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// No console: every refusal comes before the target is touched.
	tgt := target.New(target.Config{CacheDir: filepath.Join(dir, "cache")})

	call := func(mod *builtins.Table, backend any, expr string) error {
		thread := &starlark.Thread{Name: "test"}
		env := &builtins.Env{Ctx: ctx, Stage: "s", JobDir: job}
		setBackend(env, backend)
		builtins.Attach(thread, env)
		_, err := starlark.EvalOptions(interp.FileOptions, thread, "expr", expr, starlark.StringDict{mod.Name: mod.Module()})
		return err
	}
	callers := []struct {
		name, param string
		run         func(path string) error
	}{
		{"basalt check", "kernel", func(p string) error {
			plan, err := interp.Declare(interp.Options{File: jobFile, Params: map[string]string{"kernel": p}})
			if err != nil {
				return err
			}
			return plan.Validate()
		}},
		{"pxe.serve", "kernel", func(p string) error {
			return call(pxe.Table, srv, fmt.Sprintf("pxe.serve(%q, mac = \"02:00:00:00:00:01\")", p))
		}},
		{"target.push", "src", func(p string) error {
			return call(target.Table, tgt, fmt.Sprintf("target.push(%q, \"/tmp/x\")", p))
		}},
		{"target.deploy_image", "src", func(p string) error {
			return call(target.Table, tgt, fmt.Sprintf("target.deploy_image(%q, disk = \"/dev/sda\")", p))
		}},
		{"target.kexec", "kernel", func(p string) error {
			return call(target.Table, tgt, fmt.Sprintf("target.kexec(%q)", p))
		}},
	}
	for _, c := range []struct{ path, reason string }{
		{filepath.Join(job, "vmlinuz"), "absolute paths are refused; name a file relative to the job's directory"},
		{"../secret", "escapes the job's directory"},
		{"out", "refused: path escapes from parent"},
		{"missing", "no such file under the job's directory"},
		{"ftp://example.org/vmlinuz", "only http and https URLs are fetched"},
	} {
		for _, k := range callers {
			err := k.run(c.path)
			want := k.param + ": " + c.path + ": " + c.reason
			if err == nil || !strings.Contains(err.Error(), want) || builtins.ClassOf(err) != builtins.ClassJob {
				t.Errorf("%s(%q) = %v (class %s), want a job error with %q", k.name, c.path, err, builtins.ClassOf(err), want)
			}
		}
	}
	// And the same good path is accepted by check and served by pxe.
	if plan, err := interp.Declare(interp.Options{File: jobFile}); err != nil || plan.Validate() != nil {
		t.Errorf("check(vmlinuz) = %v, want ok", err)
	}
	if err := call(pxe.Table, srv, `pxe.serve("vmlinuz", mac = "02:00:00:00:00:01")`); err != nil {
		t.Errorf("pxe.serve(vmlinuz) = %v, want ok", err)
	}
}

// TestCallersDownloadErrors: through pxe.serve and target.push, a URL that
// answers 404 is an infrastructure error naming the URL, and so is a URL
// whose content does not have the sha256 the job gave.
func TestCallersDownloadErrors(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("served kernel"))
	}))
	defer hs.Close()
	dir := t.TempDir()
	ctx := context.Background()
	srv := pxe.NewServer(pxe.Config{LoaderDir: dir, CacheDir: filepath.Join(dir, "cache"), DownloadRetries: 1})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tgt := target.New(target.Config{CacheDir: filepath.Join(dir, "cache"), HTTPRetries: 1, Publisher: srv})
	eval := func(mod *builtins.Table, backend any, expr string) error {
		thread := &starlark.Thread{Name: "test"}
		env := &builtins.Env{Ctx: ctx, Stage: "s", JobDir: dir}
		setBackend(env, backend)
		builtins.Attach(thread, env)
		_, err := starlark.EvalOptions(interp.FileOptions, thread, "expr", expr, starlark.StringDict{mod.Name: mod.Module()})
		return err
	}
	missing := hs.URL + "/missing"
	h := sha256.Sum256([]byte("another kernel"))
	wrong := hex.EncodeToString(h[:])
	for _, c := range []struct {
		name, expr, want string
	}{
		{"pxe.serve(404)", fmt.Sprintf("pxe.serve(%q, mac = \"02:00:00:00:00:01\")", missing), "pxe.serve: kernel: download " + missing + ": 404"},
		{"target.push(404)", fmt.Sprintf("target.push(%q, \"/tmp/x\")", missing), "target.push: src: download " + missing + ": 404"},
		{"pxe.serve(wrong sha256)", fmt.Sprintf("pxe.serve(%q, mac = \"02:00:00:00:00:01\", sha256 = {\"kernel\": %q})", hs.URL+"/vmlinuz", wrong),
			"pxe.serve: kernel: download " + hs.URL + "/vmlinuz: sha256 is "},
	} {
		mod, be := pxe.Table, any(srv)
		if strings.HasPrefix(c.name, "target") {
			mod, be = target.Table, tgt
		}
		err := eval(mod, be, c.expr)
		if err == nil || !strings.Contains(err.Error(), c.want) || builtins.ClassOf(err) != builtins.ClassInfra {
			t.Errorf("%s = %v (class %s), want an infrastructure error with %q", c.name, err, builtins.ClassOf(err), c.want)
		}
	}
}

// setBackend sets the backend of the module b belongs to.
func setBackend(env *builtins.Env, b any) {
	switch b := b.(type) {
	case *pxe.Server:
		pxe.SetBackend(env, b)
	case *target.Target:
		target.SetBackend(env, b)
	default:
		panic(fmt.Sprintf("no module has a backend %T", b))
	}
}
