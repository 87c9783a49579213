package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/spf13/cobra"
)

// KCIDB v5 (kernelci/kcidb-io, kcidb_io/schema/v05_00.py): an origin is
// [a-z0-9_]+, every id is ORIGIN:ANYTHING, a test path is dot-separated
// [a-zA-Z0-9_-]+ parts, a log excerpt is at most 16384 characters.
var (
	kcidbOriginRE = regexp.MustCompile(`^[a-z0-9_]+$`)
	kcidbIDRE     = regexp.MustCompile(`^[a-z0-9_]+:.*$`)
	kcidbPartRE   = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)
)

const kcidbLogExcerptMax = 16384

type kcidbReport struct {
	Version kcidbVersion `json:"version"`
	Tests   []kcidbTest  `json:"tests"`
}

type kcidbVersion struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
}

type kcidbTest struct {
	ID         string         `json:"id"`
	Origin     string         `json:"origin"`
	BuildID    string         `json:"build_id"`
	Path       string         `json:"path"`
	Status     string         `json:"status"`
	Comment    string         `json:"comment,omitempty"`
	Number     *kcidbNumber   `json:"number,omitempty"`
	StartTime  string         `json:"start_time,omitempty"`
	Duration   *float64       `json:"duration,omitempty"`
	LogExcerpt string         `json:"log_excerpt,omitempty"`
	Misc       map[string]any `json:"misc,omitempty"`
}

type kcidbNumber struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
}

func (a *app) exportCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "export",
		Short: "Export a result bundle to another system's format",
	}
	var origin, buildID string
	k := &cobra.Command{
		Use:   "kcidb BUNDLE --origin NAME --build-id ID",
		Short: "Print a bundle's tests as KCIDB v5 JSON (KernelCI's common report database)",
		Long: `kcidb prints the bundle's test cases, and the job itself as their parent node,
as a KCIDB v5 report, ready for kcidb-submit. The job's verdict maps to a KCIDB
status: pass PASS, tests failed FAIL, a job error ERROR, a device error ERROR (the
target did not boot or answer: the tested code's state is unknown), an
infrastructure error MISS (the harness failed), canceled MISS. A case's pass, fail
and skip are PASS, FAIL and SKIP; a case with a measurement carries it as its
number. Failures carry the last 16 KiB of console.log as their log excerpt.`,
		Example: "  basalt export kcidb results/42 --origin mylab --build-id kernelci:build-1234 | kcidb-submit -p PROJECT -t TOPIC",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			rep, err := kcidbExport(args[0], origin, buildID)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		},
	}
	k.Flags().StringVar(&origin, "origin", "", "KCIDB origin: the name of the submitting CI system, [a-z0-9_]+ (required)")
	k.Flags().StringVar(&buildID, "build-id", "", "KCIDB id of the build the job tested, ORIGIN:ID (required)")
	c.AddCommand(k)
	return c
}

func kcidbExport(dir, origin, buildID string) (*kcidbReport, error) {
	if !kcidbOriginRE.MatchString(origin) {
		return nil, usagef("--origin %q: a KCIDB origin is lower-case letters, digits and _ ([a-z0-9_]+)", origin)
	}
	if !kcidbIDRE.MatchString(buildID) {
		return nil, usagef("--build-id %q: a KCIDB id starts with the origin that made the build and a colon (ORIGIN:ID)", buildID)
	}
	data, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usagef("bundle %s: no result.json", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", dir, err)
	}
	var res bundle.Result
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("read bundle %s: result.json: %w", dir, err)
	}
	runID := fmt.Sprintf("%s:%s-%s", origin, res.Job, res.Started.UTC().Format("20060102T150405.000Z"))
	jobPath := kcidbPart(res.Job)
	attempts := map[string]int{}
	for _, st := range res.Stages {
		attempts[st.Name] = st.Attempts
	}
	var excerpt string
	if res.Status != "pass" {
		excerpt = logExcerpt(filepath.Join(dir, "console.log"))
	}
	misc := map[string]any{"bundle_status": res.Status}
	if dev, ok := res.Device["name"]; ok {
		misc["device"] = dev
	}
	job := kcidbTest{ID: runID, Origin: origin, BuildID: buildID, Path: jobPath, Status: kcidbJobStatus(res), Misc: misc}
	if !res.Started.IsZero() {
		job.StartTime = res.Started.UTC().Format(time.RFC3339Nano)
		d := float64(res.DurationMS) / 1000
		job.Duration = &d
	}
	if res.Error != nil {
		job.Comment = fmt.Sprintf("%s error: %s", res.Error.Class, firstLine(errors.New(res.Error.Message)))
		misc["error_class"] = res.Error.Class
		job.LogExcerpt = excerpt
	}
	rep := &kcidbReport{Version: kcidbVersion{Major: 5, Minor: 0}, Tests: []kcidbTest{job}}
	seen := map[string]int{}
	for _, tc := range res.Tests {
		// A retried stage keeps its failed attempts' cases; only the last
		// attempt's are the verdict (as in junit.xml).
		if n := attempts[tc.Stage]; tc.Attempt != 0 && n != 0 && tc.Attempt != n {
			continue
		}
		path := jobPath
		if tc.Stage != "" {
			path += "." + kcidbPart(tc.Stage)
		}
		path += "." + kcidbPart(tc.Name)
		seen[path]++
		if seen[path] > 1 { // the same case twice in one stage
			path += fmt.Sprintf("_%d", seen[path])
		}
		t := kcidbTest{ID: fmt.Sprintf("%s.%d", runID, len(rep.Tests)), Origin: origin, BuildID: buildID, Path: path,
			Status: kcidbCaseStatus(tc.Result), Comment: tc.Message}
		d := float64(tc.DurationMS) / 1000
		t.Duration = &d
		if tc.Measurement != nil {
			t.Number = &kcidbNumber{Value: *tc.Measurement, Unit: tc.Units}
		}
		if t.Status == "FAIL" {
			t.LogExcerpt = excerpt
		}
		rep.Tests = append(rep.Tests, t)
	}
	return rep, nil
}

func kcidbJobStatus(res bundle.Result) string {
	switch res.Status {
	case "pass":
		return "PASS"
	case "fail":
		return "FAIL"
	case "canceled":
		return "MISS"
	}
	if res.Error != nil && res.Error.Class == "infra" {
		return "MISS"
	}
	return "ERROR"
}

func kcidbCaseStatus(result string) string {
	switch result {
	case "pass":
		return "PASS"
	case "fail":
		return "FAIL"
	case "skip":
		return "SKIP"
	}
	return "ERROR"
}

// kcidbPart makes one dot-free KCIDB path part of a basalt name.
func kcidbPart(s string) string {
	s = kcidbPartRE.ReplaceAllString(s, "_")
	if s == "" {
		return "_"
	}
	return s
}

// logExcerpt returns the end of the console log, at most 16384
// bytes of valid UTF-8, starting at a line (or at least a character) boundary.
func logExcerpt(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-kcidbLogExcerptMax, 0)
	buf := make([]byte, fi.Size()-off)
	n, _ := f.ReadAt(buf, off)
	buf = buf[:n]
	if off > 0 {
		if i := strings.IndexByte(string(buf), '\n'); i >= 0 && i < len(buf)-1 {
			buf = buf[i+1:]
		}
	}
	// Console bytes are raw: invalid UTF-8 becomes U+FFFD, 3 bytes, so trim
	// again to stay within 16 KiB (and so within 16384 characters).
	s := strings.ToValidUTF8(string(buf), "\uFFFD")
	if len(s) > kcidbLogExcerptMax {
		s = s[len(s)-kcidbLogExcerptMax:]
		for len(s) > 0 && !utf8.RuneStart(s[0]) {
			s = s[1:]
		}
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:]
		}
	}
	return s
}
