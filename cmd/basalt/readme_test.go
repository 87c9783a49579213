package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The user docs are self-contained: every relative link of README.md,
// runtime/lab/README.md and docs/*.md names a file in the repository, and
// none points outside it (../shared/DESIGN.md is not shipped).
func TestDocsSelfContained(t *testing.T) {
	root := filepath.Join("..", "..")
	files := []string{"README.md", filepath.Join("runtime", "lab", "README.md")}
	more, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if len(more) == 0 {
		t.Fatalf("no docs/*.md; the contract the README links to must live in the repository")
	}
	for _, m := range more {
		rel, _ := filepath.Rel(root, m)
		files = append(files, rel)
	}
	link := regexp.MustCompile(`\]\(([^)#\s]+)[^)]*\)|` + "`" + `(\.\./[^` + "`" + `]+)` + "`")
	absRoot, _ := filepath.Abs(root)
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := m[1] + m[2]
			if strings.Contains(target, "://") {
				continue
			}
			p, _ := filepath.Abs(filepath.Join(root, filepath.Dir(f), target))
			if !strings.HasPrefix(p, absRoot+string(filepath.Separator)) {
				t.Errorf("%s links to %s, outside the repository", f, target)
				continue
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s links to %s: %v", f, target, err)
			}
		}
	}
}
