package lab

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// FormatDevice writes d for `basalt device show`: one "key: value" line per
// setting. The password appears as its reference (secret(ENV)), never its
// value.
func FormatDevice(w io.Writer, d *Device) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k string, format string, v ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(format, v...))
	}
	dt := d.Type
	if dt == nil {
		dt = &DeviceType{}
	}
	line("name", "%s", d.Name)
	typeFile := "built-in"
	if dt.File != "" {
		typeFile = dt.File
	}
	line("type", "%s (%s, %s)", dt.Name, dt.Arch, typeFile)
	file := d.File
	if file == "" {
		file = "built-in"
	}
	line("file", "%s", file)
	if d.MAC != "" {
		line("mac", "%s", d.MAC)
	}
	if d.IPMI.Host != "" {
		line("ipmi", "%s port %d user %q", d.IPMI.Host, d.IPMI.Port, d.IPMI.User)
		line("ipmi_password", "%s", d.IPMI.Password.String())
		line("cipher_suites", "%s", joinInts(d.IPMI.CipherSuites))
		line("ipmi_timeout", "%s × %d retries", d.IPMI.Timeout, d.IPMI.Retries)
		if d.IPMI.Keepalive > 0 {
			line("ipmi_keepalive", "%s", d.IPMI.Keepalive)
		}
	}
	switch d.Console.Transport {
	case "command":
		line("console", "command %q", d.Console.Command)
	case "tcp":
		line("console", "tcp %s", d.Console.Address)
	default:
		line("console", "%s", d.Console.Transport)
	}
	line("delays", "bootloader %s, test shell %s per character", d.BootloaderDelay(), d.TestShellDelay())
	if len(d.PowerCommand) > 0 {
		// What the power module does with them (builtins/power).
		status := "status command"
		if _, ok := d.PowerCommand["status"]; !ok {
			status = "cannot report"
		}
		if d.IPMI.Host != "" || (d.Type != nil && (d.Type.Name == "sim" || d.Type.Name == "qemu")) {
			status = "BMC"
		}
		line("power", "commands; status: %s", status)
		for _, a := range powerActions {
			if c, ok := d.PowerCommand[a]; ok {
				line("power "+a, "%s", c)
			}
		}
	} else {
		line("power", "ipmi")
	}
	if d.Sim != (SimFaults{}) {
		line("sim faults", "console_drops=%d udp_loss=%g sol_loss=%g type_interval=%s boot_failure=%t kernel_panic=%t",
			d.Sim.ConsoleDrops, d.Sim.UDPLoss, d.Sim.SOLLoss, d.Sim.TypeInterval, d.Sim.BootFailure, d.Sim.KernelPanic)
	}
	vmKeys := make([]string, 0, len(d.VM))
	for k := range d.VM {
		vmKeys = append(vmKeys, k)
	}
	sort.Strings(vmKeys)
	for _, k := range vmKeys {
		line(k, "%v", d.VM[k])
	}
	line("kernel_console", "%s", dt.KernelConsole)
	line("loader", "%s", dt.Loader)
	line("master_prompt", "%s", rawQuote(dt.MasterPrompt))
	line("login_prompt", "%s", rawQuote(dt.LoginPrompt))
	line("shell_prompt", "%s", rawQuote(dt.ShellPrompt))
	facts := map[string]any{}
	for k, v := range dt.Facts {
		facts[k] = v
	}
	for k, v := range d.Facts {
		facts[k] = v
	}
	keys := make([]string, 0, len(facts))
	for k := range facts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		line("fact "+k, "%v", facts[k])
	}
	if d.Err != nil {
		line("problem", "%v", d.Err)
	}
	return tw.Flush()
}

// rawQuote shows a regular expression as the Starlark raw string it was
// most likely written as.
func rawQuote(re string) string {
	if strings.ContainsAny(re, "\"\n") || strings.HasSuffix(re, "\\") {
		return strconv.Quote(re)
	}
	return `r"` + re + `"`
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// DeviceSummary is one row of `basalt device list`.
type DeviceSummary struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Console  string `json:"console"`
	IPMIHost string `json:"ipmi_host,omitempty"`
	MAC      string `json:"mac,omitempty"`
	File     string `json:"file"`
	// Problem says why the device cannot run jobs (its file is broken);
	// "" when it can. Secrets are not read here.
	Problem string `json:"problem,omitempty"`
	// State is the device's state in the lab's state directory, and
	// Holder who holds its lock now ("" when free).
	State  State  `json:"state"`
	Holder string `json:"holder,omitempty"`
}

// List summarises the lab's devices, sorted by name.
func List(l *Lab) []DeviceSummary {
	var out []DeviceSummary
	for _, d := range l.Devices {
		s := DeviceSummary{
			Name:     d.Name,
			Console:  d.Console.Transport,
			IPMIHost: d.IPMI.Host,
			MAC:      d.MAC,
			File:     d.File,
		}
		if d.Type != nil {
			s.Type = d.Type.Name
		}
		if d.Err != nil {
			s.Problem = d.Err.Error()
		}
		if st, err := ReadState(l.LockDir, d.Name); err != nil {
			s.Problem = strings.TrimPrefix(s.Problem+"; "+err.Error(), "; ")
		} else {
			s.State = st
		}
		if h, ok := CurrentHolder(l.LockDir, d.Name); ok {
			s.Holder = h.String()
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WriteList writes summaries as the table `basalt device list` prints.
func WriteList(w io.Writer, rows []DeviceSummary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tSTATE\tHEALTH\tHOLDER\tCONSOLE\tIPMI\tMAC\tFILE\tPROBLEM")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, r := range rows {
		state := r.State.Word()
		if r.State.Offline && r.State.Reason != "" {
			state += fmt.Sprintf(" (%s)", r.State.Reason)
		}
		health := r.State.Health
		if health == HealthUnknown {
			health = "unknown"
		}
		if !r.State.HealthAt.IsZero() {
			health += " " + r.State.HealthAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, dash(r.Type), state, health, dash(r.Holder), dash(r.Console), dash(r.IPMIHost), dash(r.MAC), r.File, dash(r.Problem))
	}
	return tw.Flush()
}

// FormatType writes dt for `basalt device-type show`: every setting, the
// error patterns one per line, then the facts.
func FormatType(w io.Writer, dt *DeviceType) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k string, format string, v ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(format, v...))
	}
	line("name", "%s", dt.Name)
	file := "built-in (stdlib/device-types/" + dt.Name + ".star)"
	if dt.File != "" {
		file = dt.File
	}
	line("file", "%s", file)
	if dt.Extends != "" {
		line("extends", "%s", dt.Extends)
	}
	line("arch", "%s", dt.Arch)
	line("kernel_console", "%s", dt.KernelConsole)
	line("delays", "bootloader %s, test shell %s per character", dt.BootloaderDelay, dt.TestShellDelay)
	line("loader", "%s", dt.Loader)
	line("pxe", "%t", dt.PXE)
	line("master_prompt", "%s", rawQuote(dt.MasterPrompt))
	line("login_prompt", "%s", rawQuote(dt.LoginPrompt))
	line("shell_prompt", "%s", rawQuote(dt.ShellPrompt))
	if len(dt.ErrorPatterns) == 0 {
		line("error_patterns", "none")
	}
	for i, p := range dt.ErrorPatterns {
		k := ""
		if i == 0 {
			k = "error_patterns"
		}
		fmt.Fprintf(tw, "%s\t%s\n", k+map[bool]string{true: ":", false: ""}[i == 0], rawQuote(p))
	}
	keys := make([]string, 0, len(dt.Facts))
	for k := range dt.Facts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		line("fact "+k, "%v", dt.Facts[k])
	}
	return tw.Flush()
}
