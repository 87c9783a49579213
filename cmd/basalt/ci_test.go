package main

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// junitSuites is the part of junit.xml the CI reads.
type junitSuites struct {
	Suites []struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Cases    []struct {
			Name    string    `xml:"name,attr"`
			Failure *struct{} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestGitLabCI runs ci/gitlab-ci.yml with gitlab-ci-local (shell executor)
// over a copy of the repository with a lab of two sim devices: the check
// stage and a pool run pass, and a run whose tests fail still leaves its
// bundle and junit report as artifacts (artifacts: when: always).
func TestGitLabCI(t *testing.T) {
	for _, tool := range []string{"gitlab-ci-local", "rsync", "git", "node"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (CI installs it: .ci/run)", tool)
		}
	}
	if testing.Short() {
		t.Skip("builds basalt and runs a pipeline")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "basalt"), ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	repo := filepath.Join(tmp, "repo")
	root := filepath.Join("..", "..")
	os.MkdirAll(repo, 0o755)
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "jobs"), filepath.Join(repo, "jobs")).CombinedOutput(); err != nil {
		t.Fatalf("copy jobs: %v\n%s", err, out)
	}
	ci, err := os.ReadFile(filepath.Join(root, "ci", "gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		".gitlab-ci.yml":      string(ci),
		"lab/lab.star":        `lab(name = "ci")`,
		"lab/devices/s1.star": `device(type = "sim", mac = "02:42:00:00:04:01")`,
		"lab/devices/s2.star": `device(type = "sim", mac = "02:42:00:00:04:02", tags = ["rack2"])`,
		"fail.star":           "job(name = \"fails\", timeout = \"1m\")\ndef one(ctx):\n    test.case(\"broken\", \"fail\", message = \"it broke\")\nstage(\"one\", one)\n",
	}
	for name, body := range files {
		p := filepath.Join(repo, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=basalt", "-c", "user.email=basalt@example.invalid"}, args...)...)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q", "-b", "main")
	git("add", "-A")
	git("commit", "-q", "-m", "ci")

	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if exec.Command("node", "-e", "process.exit(typeof new Set().union === 'function' ? 0 : 1)").Run() != nil {
		poly, _ := filepath.Abs(filepath.Join("testdata", "node-set-methods.mjs"))
		env = append(env, "NODE_OPTIONS=--import="+poly)
	}
	gcl := func(args ...string) (string, error) {
		// gitlab-ci-local sets GITLAB_CI=false, where GitLab sets true.
		cmd := exec.Command("gitlab-ci-local", append([]string{"--shell-executor-no-image",
			"--variable", "BASALT_LOCK_DIR=" + filepath.Join(tmp, "locks"), "--variable", "GITLAB_CI=true"}, args...)...)
		cmd.Dir = repo
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := gcl()
	if err != nil {
		t.Fatalf("gitlab-ci-local: %v\n%s", err, out)
	}
	// The stages are collapsible sections: gitlab-ci-local parses GitLab's
	// section markers and shows each as "NAME_started" ... "NAME took D".
	for _, want := range []string{"PASS  check", "PASS  health-sim", "device s1: the first free of pool sim",
		"stage_health_started", "stage_health took ", "cleanup_power_off_started"} {
		if !strings.Contains(out, want) {
			t.Errorf("pipeline output lacks %q\n%s", want, out)
		}
	}
	if strings.Contains(out, "health-highbank") {
		t.Errorf("health-highbank ran without a highbank runner\n%s", out)
	}
	ju := readJUnit(t, filepath.Join(repo, "results", "health-sim", "junit.xml"))
	if len(ju.Suites) == 0 || ju.Suites[0].Tests == 0 || ju.Suites[0].Failures != 0 {
		t.Errorf("health-sim junit.xml = %+v, want passed tests", ju)
	}

	// A run whose tests fail: the job fails, its bundle is still exported.
	os.RemoveAll(filepath.Join(repo, "results"))
	out, err = gcl("health-sim", "--variable", "JOB=fail.star")
	if err == nil || !strings.Contains(out, "FAIL  health-sim") {
		t.Fatalf("gitlab-ci-local with a failing job: %v, want the job to fail\n%s", err, out)
	}
	ju = readJUnit(t, filepath.Join(repo, "results", "health-sim", "junit.xml"))
	if len(ju.Suites) == 0 || ju.Suites[0].Failures != 1 {
		t.Errorf("failed run's junit.xml = %+v, want 1 failure", ju)
	}
	if _, err := os.Stat(filepath.Join(repo, "results", "health-sim", "result.json")); err != nil {
		t.Errorf("failed run's bundle is not an artifact: %v", err)
	}
}

func readJUnit(t *testing.T, path string) junitSuites {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("junit report: %v", err)
	}
	var j junitSuites
	if err := xml.Unmarshal(data, &j); err != nil {
		t.Fatalf("junit report %s: %v", path, err)
	}
	return j
}
