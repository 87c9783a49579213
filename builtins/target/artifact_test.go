package target

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/target/simdisk"
	"github.com/basalt-lab/basalt/runtime/interp"
	"go.starlark.net/starlark"
)

// TestURLSharedByPXEAndDeploy: one URL given to pxe.serve and to
// target.deploy_image in a run, and again in a second run with new
// backends over the same cache directory, is downloaded once, into one
// cache layout (package artifact). It was downloaded twice, into two
// layouts, when pxe and target each had their own cache.
func TestURLSharedByPXEAndDeploy(t *testing.T) {
	r := newRig(t)
	img := filepath.Join(t.TempDir(), "disk.img.xz")
	if err := simdisk.WriteFile(img, simdisk.Image{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	gets := 0
	base := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		gets++
		mu.Unlock()
		http.ServeContent(w, req, "disk.img.xz", time.Time{}, bytes.NewReader(data))
	}))
	u := base + "/images/disk.img.xz"

	runJob := func(run int) {
		// Each run has backends of its own; the cache directory is the lab's.
		srv := pxe.NewServer(pxe.Config{LoaderDir: t.TempDir(), CacheDir: r.cfg.CacheDir, Emit: r.emit})
		if err := srv.Start(r.context()); err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		tgt := New(r.cfg)
		thread := &starlark.Thread{Name: "test"}
		env := &builtins.Env{
			Ctx: r.context(), Stage: "deploy", JobDir: r.jobDir,
			Facts: map[string]any{"ip": r.ip},
		}
		pxe.SetBackend(env, srv)
		SetBackend(env, tgt)
		builtins.Attach(thread, env)
		src := `
s = pxe.serve(URL, mac = "02:00:00:00:00:07")
d = target.deploy_image(URL, disk = "/dev/sda")
`
		globals, err := starlark.ExecFileOptions(interp.FileOptions, thread, "job.star", src, starlark.StringDict{
			"pxe": pxe.Table.Module(), "target": Table.Module(), "URL": starlark.String(u),
		})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		served := globals["s"].(starlark.HasAttrs)
		sums, _ := served.Attr("sha256")
		kernelSum, _, _ := sums.(*starlark.Dict).Get(starlark.String("kernel"))
		d := globals["d"].(starlark.HasAttrs)
		deployed, _ := d.Attr("source_sha256")
		if kernelSum != deployed || deployed != starlark.String(sha(data)) {
			t.Errorf("run %d: pxe.serve sha256 %v, deploy_image source_sha256 %v, want both %s", run, kernelSum, deployed, sha(data))
		}
	}
	runJob(1)
	runJob(2)
	mu.Lock()
	defer mu.Unlock()
	if gets != 1 {
		t.Errorf("the URL used by pxe.serve and target.deploy_image in two runs was downloaded %d times, want 1", gets)
	}
	if n := len(r.eventsOf("artifact_download")); n != 1 {
		t.Errorf("artifact_download events = %d, want 1", n)
	}
	if n := len(r.eventsOf("artifact_cached")); n != 3 {
		t.Errorf("artifact_cached events = %d, want 3 (deploy in run 1, both in run 2)", n)
	}
	ents, _ := os.ReadDir(r.cfg.CacheDir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 3 || names[0] != "lock" || names[1] != "sha256" || names[2] != "url" {
		t.Errorf("cache directory holds %v, want [lock sha256 url]", names)
	}
}
