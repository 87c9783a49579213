package test

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// lavaDef is what basalt runs of a LAVA test definition (LAVA's
// "Lava-Test Test Definition 1.0": lava_dispatcher/actions/test/shell.py and
// the deploy/testdef.py that writes its run.sh): metadata.name, the
// params with their defaults, install.steps and run.steps. deps, parse
// patterns and the rest are LAVA's business and ignored.
type lavaDef struct {
	Name    string
	Params  []param // in the file's order
	Install []string
	Steps   []string
}

type param struct{ Name, Value string }

// paramName is what a shell variable name may be (POSIX XBD 3.235).
var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseLAVADef reads a LAVA test definition. Errors name file and line.
func parseLAVADef(file string, data []byte) (*lavaDef, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: not a LAVA test definition: want a mapping with the keys metadata and run (with steps)", file)
	}
	top := doc.Content[0]
	d := &lavaDef{}
	if md := field(top, "metadata"); md != nil && md.Kind == yaml.MappingNode {
		if n := field(md, "name"); n != nil && n.Kind == yaml.ScalarNode {
			d.Name = n.Value
		}
	}
	if ps := field(top, "params"); ps != nil {
		if ps.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s:%d: params: want a mapping of NAME: value", file, ps.Line)
		}
		for i := 0; i+1 < len(ps.Content); i += 2 {
			k, v := ps.Content[i], ps.Content[i+1]
			if !paramName.MatchString(k.Value) {
				return nil, fmt.Errorf("%s:%d: params: %q is not a shell variable name", file, k.Line, k.Value)
			}
			val, err := scalarString(v)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: params: %s: %w", file, v.Line, k.Value, err)
			}
			d.Params = append(d.Params, param{k.Value, val})
		}
	}
	var err error
	if in := field(top, "install"); in != nil && in.Kind == yaml.MappingNode {
		if d.Install, err = steps(file, "install", field(in, "steps")); err != nil {
			return nil, err
		}
	}
	run := field(top, "run")
	if run == nil || run.Kind != yaml.MappingNode || field(run, "steps") == nil {
		return nil, fmt.Errorf("%s: no run: steps: list", file)
	}
	if d.Steps, err = steps(file, "run", field(run, "steps")); err != nil {
		return nil, err
	}
	return d, nil
}

// field returns the value of key in mapping m, or nil.
func field(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// scalarString is a param's value as LAVA passes it to the shell: Python's
// str() of what PyYAML loaded, so true is "True".
func scalarString(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", errors.New("want a single value, not a list or mapping")
	}
	if n.Tag == "!!bool" {
		var b bool
		if err := n.Decode(&b); err == nil {
			if b {
				return "True", nil
			}
			return "False", nil
		}
	}
	if n.Tag == "!!null" {
		return "None", nil
	}
	return n.Value, nil
}

// steps reads a steps: list of shell command strings.
func steps(file, section string, n *yaml.Node) ([]string, error) {
	if n == nil {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: %s: steps: want a list of commands", file, n.Line, section)
	}
	var out []string
	for i, s := range n.Content {
		if s.Kind != yaml.ScalarNode || s.Tag == "!!null" {
			// A step like `- echo a: b` is a mapping to YAML.
			return nil, fmt.Errorf("%s:%d: %s: steps[%d] is not a command string (quote a step that holds \": \")", file, s.Line, section, i)
		}
		out = append(out, s.Value)
	}
	return out, nil
}

// script is the shell script that runs the definition on the target, in
// the manner of LAVA's generated run.sh: the params as shell variables
// (exported too, so that the definition's scripts see them), the
// definition's defaults first and the call's after, TESTRUN_ID, then each
// step on lines of its own, in dir. A failing step does not stop the
// others (LAVA's run.sh has no set -e either).
func (d *lavaDef) script(dir string, params []param) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, p := range append(append([]param{}, d.Params...), params...) {
		fmt.Fprintf(&b, "%s=%s; export %s\n", p.Name, shellQuote(p.Value), p.Name)
	}
	if d.Name != "" {
		fmt.Fprintf(&b, "TESTRUN_ID=%s; export TESTRUN_ID\n", shellQuote(d.Name))
	}
	fmt.Fprintf(&b, "cd %s || exit 127\n", shellQuote(dir))
	for _, s := range append(append([]string{}, d.Install...), d.Steps...) {
		b.WriteString(s)
		b.WriteString("\n")
	}
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
