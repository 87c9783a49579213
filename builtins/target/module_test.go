package target

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/builtinstest"
	"github.com/basalt-lab/basalt/builtins/target/simdisk"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/lab"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

func TestStarlarkModule(t *testing.T) {
	r := newRig(t)
	report := []byte("all passed.\n")
	r.putTargetFile("root/report.txt", report)
	r.writeJobFile("payload.txt", []byte("payload\n"))
	r.writeJobFile("vmlinuz", []byte("kernel image"))
	r.writeJobFile("initrd.gz", []byte("not really gzip, kexec does not care"))
	if err := simdisk.WriteFile(filepath.Join(r.jobDir, "disk.img.xz"), simdisk.Image{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}

	b, err := bundle.Create(filepath.Join(t.TempDir(), "bundle"), bundle.Result{Job: "target-test"}, bundle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	env := &builtins.Env{
		Ctx:    r.context(),
		Stage:  "test",
		JobDir: r.jobDir,
		Rec:    b,
		Facts:  map[string]any{"ip": r.ip},
	}
	SetBackend(env, r.tgt)
	thread := builtinstest.NewThread(t, env)
	builtinstest.ExecFile(t, thread, "testdata/target.star", nil, starlark.StringDict{
		"target":        Table.Module(),
		"REPORT_SHA256": starlark.String(sha(report)),
		"IP":            starlark.String(r.ip),
	})

	// Two good fetches of the same file, one stored copy per fetch; the
	// fetch with a wrong digest stored nothing.
	res := b.Result()
	if len(res.Artifacts) != 2 {
		t.Fatalf("bundle artifacts = %+v, want 2", res.Artifacts)
	}
	for _, a := range res.Artifacts {
		if a.Path != "artifacts/root/report.txt" || a.SHA256 != sha(report) || a.Size != int64(len(report)) {
			t.Errorf("artifact %+v, want artifacts/root/report.txt with sha256 %s", a, sha(report))
		}
	}
	got, err := os.ReadFile(filepath.Join(b.Dir, "artifacts", "root", "report.txt"))
	if err != nil || string(got) != string(report) {
		t.Errorf("stored artifact = %q, %v, want %q", got, err, report)
	}
	if left, _ := filepath.Glob(filepath.Join(b.Dir, "artifacts", "root", ".tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left in the bundle: %v", left)
	}
	events, _ := os.ReadFile(filepath.Join(b.Dir, "events.jsonl"))
	if !strings.Contains(string(events), `"builtin":"target.deploy_image"`) {
		t.Error("events.jsonl has no call event of target.deploy_image")
	}
}

func TestStarlarkRefusedAtTopLevel(t *testing.T) {
	thread := &starlark.Thread{Name: "test"}
	builtins.Attach(thread, &builtins.Env{Ctx: context.Background(), Declaring: true})
	for _, src := range []string{`target.run("x")`, `target.fetch("/x")`, `target.push("a", "/b")`,
		`target.deploy_image("a.img", "/dev/sda")`, `target.kexec("k")`, `target.ip()`} {
		_, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "job.star", src, starlark.StringDict{"target": Table.Module()})
		if err == nil || !strings.Contains(err.Error(), "not at top level") || builtins.ClassOf(err) != builtins.ClassJob {
			t.Errorf("%s at top level = %v, want a job error", src, err)
		}
	}
}

func TestStarlarkNoBackend(t *testing.T) {
	// A device without a target backend is the lab's problem; a run
	// without any device is the job's (it needs --device).
	for _, tt := range []struct {
		dev  *lab.Device
		want builtins.Class
		msg  string
	}{
		{lab.BuiltinSim("sim"), builtins.ClassInfra, "target.run: target: no target backend"},
		{nil, builtins.ClassJob, "target.run: target: this run has no device"},
	} {
		thread := &starlark.Thread{Name: "test"}
		env := &builtins.Env{Ctx: context.Background()}
		lab.SetDevice(env, tt.dev)
		builtins.Attach(thread, env)
		_, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "job.star", `target.run("x")`, starlark.StringDict{"target": Table.Module()})
		if builtins.ClassOf(err) != tt.want || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("target.run without a backend, device %v = %v (class %s), want %q of class %s", tt.dev != nil, err, builtins.ClassOf(err), tt.msg, tt.want)
		}
	}
}

func TestDocumented(t *testing.T) {
	if u := builtins.Undocumented(Table); len(u) > 0 {
		t.Errorf("undocumented: %v", u)
	}
	// The package doc lists every function.
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Table.Members {
		if !strings.Contains(string(doc), "target."+m.Name+"(") {
			t.Errorf("doc.go does not list target.%s", m.Name)
		}
	}
}
