package interp

import (
	"fmt"
	"io"
	"strings"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/artifact"
	"go.starlark.net/starlark"
)

// Problems lists everything wrong with a plan that can be known without
// touching the lab. All are job errors.
type Problems []string

func (p Problems) Error() string { return strings.Join(p, "\n") }

// Validate checks stage timeouts against the job timeout and that artifact
// params name files under the job directory or http(s) URLs, by the rules
// of package artifact (the builtins' own). It returns nil
// or a job error listing every problem.
func (p *Plan) Validate() error {
	var probs Problems
	for _, s := range p.Stages {
		if s.Timeout > p.Job.Timeout {
			probs = append(probs, fmt.Sprintf("%s: stage %q timeout %s is longer than the job timeout %s", s.Pos, s.Name, s.Timeout, p.Job.Timeout))
		}
	}
	for _, a := range p.Job.Artifacts {
		if err := p.checkArtifact(a); err != nil {
			probs = append(probs, fmt.Sprintf("%s: %v", p.Job.Pos, err))
		}
	}
	if len(probs) == 0 {
		return nil
	}
	return builtins.Job(probs)
}

// Artifact describes an artifact param for check output and result.json.
type Artifact struct {
	Param string
	Value string
	URL   bool
	Size  int64
}

// Artifacts returns the artifact params with their values.
func (p *Plan) Artifacts() []Artifact {
	var out []Artifact
	params := p.ParamMap()
	for _, a := range p.Job.Artifacts {
		s, ok := params[a].(starlark.String)
		if !ok || s == "" {
			continue
		}
		out = append(out, Artifact{Param: a, Value: string(s), URL: artifact.IsURL(string(s))})
	}
	return out
}

func (p *Plan) checkArtifact(param string) error {
	v, ok := p.ParamMap()[param].(starlark.String)
	if !ok {
		return fmt.Errorf("artifact param %q must be a string (a path or URL)", param)
	}
	s := string(v)
	if s == "" {
		return nil // optional artifact left empty
	}
	if artifact.IsURL(s) {
		return nil // check touches no network
	}
	f, err := artifact.Resolve(p.Dir, s)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", param, err)
	}
	f.Close()
	return nil
}

// Print writes the plan in the form `basalt check` shows.
func (p *Plan) Print(w io.Writer) {
	fmt.Fprintf(w, "job:         %s (%s)\n", p.Job.Name, p.File)
	dt := p.Job.DeviceType
	if dt == "" {
		dt = "(any)"
	}
	if len(p.Job.Devices) > 0 {
		fmt.Fprintln(w, "devices:")
		for _, r := range p.Job.Roles() {
			fmt.Fprintf(w, "  %s: %s\n", r, p.Job.Devices[r])
		}
	} else {
		fmt.Fprintf(w, "device type: %s\n", dt)
	}
	fmt.Fprintf(w, "timeout:     %s\n", p.Job.Timeout)
	if len(p.Job.Params) > 0 {
		fmt.Fprintln(w, "params:")
		arts := map[string]bool{}
		for _, a := range p.Job.Artifacts {
			arts[a] = true
		}
		for _, prm := range p.Job.Params {
			note := ""
			if prm.Overridden {
				note += "  (--param)"
			}
			if arts[prm.Name] {
				note += "  (artifact)"
			}
			fmt.Fprintf(w, "  %s = %s%s\n", prm.Name, prm.Value.String(), note)
		}
	}
	fmt.Fprintln(w, "stages:")
	for i, s := range p.Stages {
		to := "rest of job"
		if s.Timeout > 0 {
			to = s.Timeout.String()
		}
		fmt.Fprintf(w, "  %d. %-20s timeout %-12s retries %d  %s\n", i+1, s.Name, to, s.Retries, s.Pos)
	}
	if len(p.Cleanups) > 0 {
		fmt.Fprintln(w, "cleanup:")
		for _, c := range p.Cleanups {
			fmt.Fprintf(w, "  - %-20s timeout %-12s %s\n", c.Name, c.Timeout, c.Pos)
		}
	}
}
