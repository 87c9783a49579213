package interp

import (
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
)

// timeout= means the same in job, stage and cleanup as in every builtin:
// None is the default, a positive duration sets it, 0 or less is an error.
func TestDeclareTimeoutMeaning(t *testing.T) {
	const fn = "def f(ctx):\n    pass\n"
	for _, tc := range []struct {
		src                 string
		job, stage, cleanup time.Duration
		err                 string
	}{
		{"job(name='a')\n" + fn + "stage('s', f)\ncleanup(f)\n", DefaultJobTimeout, 0, DefaultCleanupTimeout, ""},
		{"job(name='a', timeout=None)\n" + fn + "stage('s', f, timeout=None)\ncleanup(f, timeout=None)\n", DefaultJobTimeout, 0, DefaultCleanupTimeout, ""},
		{"job(name='a', timeout='10m')\n" + fn + "stage('s', f, timeout=30)\ncleanup(f, timeout='5s')\n", 10 * time.Minute, 30 * time.Second, 5 * time.Second, ""},
		{"job(name='a', timeout=0)\n", 0, 0, 0, `job: for parameter "timeout": must be positive (got 0); omit it for the stage's deadline`},
		{"job(name='a')\n" + fn + "stage('s', f, timeout=0)\n", 0, 0, 0, `stage: for parameter "timeout": must be positive (got 0)`},
		{"job(name='a')\n" + fn + "stage('s', f)\ncleanup(f, timeout='0s')\n", 0, 0, 0, `cleanup: for parameter "timeout": must be positive (got "0s")`},
		{"job(name='a')\n" + fn + "stage('s', f)\ncleanup(f, timeout=-1)\n", 0, 0, 0, `cleanup: for parameter "timeout": must be positive (got -1)`},
	} {
		p, err := declare(t, tc.src, nil)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || builtins.ClassOf(err) != builtins.ClassJob {
				t.Errorf("Declare(%q) = %v, want job error %q", tc.src, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Declare(%q) = %v", tc.src, err)
			continue
		}
		if p.Job.Timeout != tc.job || p.Stages[0].Timeout != tc.stage || p.Cleanups[0].Timeout != tc.cleanup {
			t.Errorf("Declare(%q) timeouts = job %v, stage %v, cleanup %v; want %v, %v, %v", tc.src,
				p.Job.Timeout, p.Stages[0].Timeout, p.Cleanups[0].Timeout, tc.job, tc.stage, tc.cleanup)
		}
	}
}

// job, stage and cleanup are predeclared from the table `basalt doc` and
// runtime/lint read, and their Params agree with their UnpackArgs.
func TestDeclarationsTable(t *testing.T) {
	for _, err := range builtins.CheckParams(Declarations) {
		t.Error(err)
	}
	st := &declState{plan: &Plan{}}
	got := st.builtins()
	for _, b := range Declarations.Members {
		if got[b.Name] == nil {
			t.Errorf("%s is in Declarations but not predeclared", b.Name)
		}
	}
	if len(got) != len(Declarations.Members) {
		t.Errorf("predeclared %d declarations, the table has %d", len(got), len(Declarations.Members))
	}
}
