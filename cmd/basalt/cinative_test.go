package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/bundle"
)

// The summary stays within GitHub's 1 MiB step summary limit however many
// tests there are, and its failures come first.
func TestSummaryMarkdownBounded(t *testing.T) {
	res := bundle.Result{Job: "big", File: "big.star", Status: "fail", Stages: []bundle.Stage{{Name: "s", Status: "pass", Attempts: 1}}}
	for i := 0; i < 50000; i++ {
		r := "pass"
		if i == 49999 {
			r = "fail"
		}
		res.Tests = append(res.Tests, builtins.TestCase{Name: fmt.Sprintf("case-%05d-%s", i, strings.Repeat("x", 20)), Result: r, Stage: "s", Attempt: 1, Message: "last one broke"})
	}
	md := summaryMarkdown(res, nil, "out", stepSummaryMax)
	if len(md) > stepSummaryMax {
		t.Errorf("summaryMarkdown(50000 tests) = %d bytes, want ≤ %d", len(md), stepSummaryMax)
	}
	f, table := strings.Index(md, "#### Failures"), strings.Index(md, "| | name |")
	if f < 0 || table < 0 || f > table || !strings.Contains(md[f:table], "case-49999") {
		t.Errorf("summaryMarkdown: the failure (the last case) is not listed before the table")
	}
	if !strings.Contains(md, "more rows in result.json") {
		t.Errorf("summaryMarkdown: a cut table does not say so")
	}
}

// A summary.md that cannot be written is a warning naming it.
func TestCIReportUnwritable(t *testing.T) {
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr}
	dir := filepath.Join(t.TempDir(), "gone")
	a.ciReport(bundle.Result{Job: "j", Status: "pass"}, nil, dir)
	if !strings.Contains(stderr.String(), "warning: write summary: open "+filepath.Join(dir, "summary.md")) {
		t.Errorf("ciReport(unwritable bundle) stderr = %q, want a warning naming summary.md", &stderr)
	}
}
