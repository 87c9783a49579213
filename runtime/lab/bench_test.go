package lab

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkLoadExampleLab measures reading jobs/lab (lab.star, two
// devices) as `basalt run --lab` does at start.
func BenchmarkLoadExampleLab(b *testing.B) {
	dir := filepath.Join("..", "..", "jobs", "lab")
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLockRelease measures an uncontended lock and release.
func BenchmarkLockRelease(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	for b.Loop() {
		h, err := Lock(ctx, dir, "hb1", Holder{Job: "bench"}, 0)
		if err != nil {
			b.Fatal(err)
		}
		h.Release()
	}
}
