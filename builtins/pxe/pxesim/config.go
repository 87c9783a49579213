package pxesim

import (
	"fmt"
	"strings"
)

// Menu is a parsed pxelinux config: the subset of syslinux's config
// language (doc/syslinux.txt) a PXE boot of Linux uses.
type Menu struct {
	Default string // the DEFAULT line, label or kernel command
	Labels  []Label
	Say     []string // SAY lines, printed when the config is loaded
}

// Label is one LABEL block.
type Label struct {
	Name   string
	Kernel string   // KERNEL or LINUX
	Initrd []string // INITRD, or initrd= in APPEND (comma-separated)
	FDT    string   // FDT or DEVICETREE
	Append string   // APPEND; "-" means none
}

// ParseConfig parses a pxelinux config. Keywords are case-insensitive;
// unknown keywords (MENU, TIMEOUT, PROMPT, IPAPPEND, ...) are ignored, as
// pxelinux ignores what it does not need.
func ParseConfig(data []byte) (*Menu, error) {
	m := &Menu{}
	var cur *Label
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		kw, arg, _ := strings.Cut(line, " ")
		if t := strings.IndexByte(kw, '\t'); t >= 0 {
			kw, arg = kw[:t], kw[t+1:]+" "+arg
		}
		kw = strings.ToUpper(kw)
		arg = strings.TrimSpace(arg)
		needLabel := func() error {
			if cur == nil {
				return fmt.Errorf("line %d: %s outside a LABEL", i+1, kw)
			}
			return nil
		}
		switch kw {
		case "DEFAULT":
			m.Default = arg
		case "SAY":
			m.Say = append(m.Say, arg)
		case "LABEL":
			if arg == "" {
				return nil, fmt.Errorf("line %d: LABEL without a name", i+1)
			}
			m.Labels = append(m.Labels, Label{Name: arg})
			cur = &m.Labels[len(m.Labels)-1]
		case "KERNEL", "LINUX":
			if err := needLabel(); err != nil {
				return nil, err
			}
			cur.Kernel = arg
		case "INITRD":
			if err := needLabel(); err != nil {
				return nil, err
			}
			cur.Initrd = splitList(arg)
		case "FDT", "DEVICETREE":
			if err := needLabel(); err != nil {
				return nil, err
			}
			cur.FDT = arg
		case "APPEND":
			if err := needLabel(); err != nil {
				return nil, err
			}
			if arg == "-" {
				arg = ""
			}
			cur.Append = arg
		}
	}
	for i := range m.Labels {
		l := &m.Labels[i]
		if len(l.Initrd) == 0 {
			for _, f := range strings.Fields(l.Append) {
				if v, ok := strings.CutPrefix(f, "initrd="); ok {
					l.Initrd = splitList(v)
				}
			}
		}
	}
	return m, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Entry returns what DEFAULT boots: the label it names, or, when it names
// no label, a kernel command line "kernel args..." (syslinux's behaviour);
// with no DEFAULT, the first label.
func (m *Menu) Entry() (Label, error) {
	if m.Default == "" {
		if len(m.Labels) == 0 {
			return Label{}, fmt.Errorf("no DEFAULT and no LABEL")
		}
		if m.Labels[0].Kernel == "" {
			return Label{}, fmt.Errorf("label %s has no KERNEL", m.Labels[0].Name)
		}
		return m.Labels[0], nil
	}
	def := strings.Fields(m.Default)
	for _, l := range m.Labels {
		if strings.EqualFold(l.Name, def[0]) {
			if l.Kernel == "" {
				return Label{}, fmt.Errorf("label %s has no KERNEL", l.Name)
			}
			return l, nil
		}
	}
	l := Label{Name: def[0], Kernel: def[0], Append: strings.Join(def[1:], " ")}
	for _, f := range def[1:] {
		if v, ok := strings.CutPrefix(f, "initrd="); ok {
			l.Initrd = splitList(v)
		}
	}
	return l, nil
}
