package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/rhysd/actionlint"
)

// TestGitHubWorkflow checks ci/github-workflow.yml with actionlint (act
// would need a Docker daemon and runner images from the network, neither of
// which this test can count on).
func TestGitHubWorkflow(t *testing.T) {
	root := filepath.Join("..", "..")
	src, err := os.ReadFile(filepath.Join(root, "ci", "github-workflow.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// actionlint lints files under .github/workflows, with the config beside.
	dir := t.TempDir()
	wf := filepath.Join(dir, ".github", "workflows", "basalt.yml")
	os.MkdirAll(filepath.Dir(wf), 0o755)
	os.WriteFile(wf, src, 0o644)
	l, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{ConfigFile: filepath.Join(root, "ci", "actionlint.yaml"), Shellcheck: "shellcheck"})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFile(wf, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Errorf("ci/github-workflow.yml:%d:%d: %s [%s]", e.Line, e.Column, e.Message, e.Kind)
	}

	// The linter does find mistakes: an unknown runner label, a bad expression.
	bad := []byte("on: push\njobs:\n  t:\n    runs-on: [self-hosted, nosuchlabel]\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
	errs, err = l.Lint(wf, bad, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) < 2 {
		t.Errorf("actionlint on a broken workflow = %d errors, want the label and the expression", len(errs))
	}
}
