package interp

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
)

// labJob writes a lab (lab/lib/ with its libraries, a secret beside the
// lab, a symlink out of lib/) and a job loading module, and declares it.
func labJob(t *testing.T, module string, withLab bool) (*Plan, error) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"lab/lib/net.star":        "MTU = 9000\n",
		"lab/lib/sub/disks.star":  "load('@lab//net.star', 'MTU')\nDISK = 'sda'\nBOTH = (DISK, MTU)\n",
		"lab/secret.star":         "MTU = 1\n",
		"jobs/job.star":           "load(" + `"` + module + `"` + ", x = 'MTU')\njob(name = 'j')\ndef f(ctx):\n    pass\nstage('s', f)\n",
		"lab/lib/wrong_suffix.py": "MTU = 2\n",
		"lab/lib/relative.star":   "load('net.star', 'MTU')\n",
		"jobs/net.star":           "MTU = 3\n",
	}
	if strings.Contains(module, "disks") {
		files["jobs/job.star"] = "load(" + `"` + module + `"` + ", x = 'BOTH')\njob(name = 'j')\ndef f(ctx):\n    pass\nstage('s', f)\n"
	}
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "lab", "secret.star"), filepath.Join(dir, "lab", "lib", "link.star")); err != nil {
		t.Fatal(err)
	}
	o := Options{File: filepath.Join(dir, "jobs", "job.star"), Modules: modules()}
	if withLab {
		o.LabDir = filepath.Join(dir, "lab")
	}
	return Declare(o)
}

func TestLabLoad(t *testing.T) {
	for _, tc := range []struct {
		module string
		lab    bool
		want   string   // error substring; "" loads
		inputs []string // the @lab// inputs recorded, in order
	}{
		{module: "@lab//net.star", lab: true, inputs: []string{"@lab//net.star"}},
		{module: "@lab//./net.star", lab: true, inputs: []string{"@lab//net.star"}},
		{module: "@lab//sub/disks.star", lab: true, inputs: []string{"@lab//sub/disks.star", "@lab//net.star"}},
		{module: "@lab//../secret.star", lab: true, want: "the path leaves the lab's lib/ directory"},
		{module: "@lab//sub/../../secret.star", lab: true, want: "the path leaves the lab's lib/ directory"},
		{module: "@lab///etc/passwd.star", lab: true, want: "absolute paths are refused"},
		{module: "@lab//link.star", lab: true, want: "refused"},
		{module: "@lab//missing.star", lab: true, want: "no such file under the lab's lib/ directory"},
		{module: "@lab//wrong_suffix.py", lab: true, want: "module names end in .star"},
		{module: "@lab//relative.star", lab: true, want: `load("net.star"): a @lab// library loads lab libraries as @lab//NAME.star`},
		{module: "@lab//net.star", lab: false, want: "job.star:1:1: cannot load @lab//net.star"},
		{module: "@lab//net.star", lab: false, want: "no lab: @lab// needs a lab directory"},
	} {
		plan, err := labJob(t, tc.module, tc.lab)
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Declare(load(%q), lab %v) = %v, want error containing %q", tc.module, tc.lab, err, tc.want)
			} else if c := builtins.ClassOf(err); c != builtins.ClassJob {
				t.Errorf("Declare(load(%q)) class = %s, want job", tc.module, c)
			}
			continue
		}
		if err != nil {
			t.Errorf("Declare(load(%q)) = %v, want it to load", tc.module, err)
			continue
		}
		var got []string
		for _, in := range plan.Inputs {
			if strings.HasPrefix(in.Name, LabPrefix) {
				got = append(got, in.Name)
				data, err := os.ReadFile(filepath.Join(filepath.Dir(plan.File), "..", "lab", "lib", strings.TrimPrefix(in.Name, LabPrefix)))
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(data)
				if in.SHA256 != hex.EncodeToString(sum[:]) || in.Size != int64(len(data)) {
					t.Errorf("input %s = %s (%d bytes), want sha256 %x (%d)", in.Name, in.SHA256, in.Size, sum, len(data))
				}
			}
		}
		if strings.Join(got, " ") != strings.Join(tc.inputs, " ") {
			t.Errorf("Declare(load(%q)) inputs = %v, want %v", tc.module, got, tc.inputs)
		}
	}
}
