package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/bazelbuild/buildtools/build"
)

// Every job and standard library file in the repository is in buildifier's
// format, as `basalt fmt --check jobs stdlib` in CI wants it.
func TestStarFilesFormatted(t *testing.T) {
	files, err := starFiles([]string{filepath.Join("..", "..", "jobs"), filepath.Join("..", "..", "stdlib")})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no .star files under jobs/ and stdlib/")
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := build.ParseBzl(name, data)
		if err != nil {
			t.Errorf("parse %v", err)
			continue
		}
		if out := build.Format(f); !bytes.Equal(out, data) {
			t.Errorf("%s is not formatted; run basalt fmt %s", name, name)
		}
	}
}
