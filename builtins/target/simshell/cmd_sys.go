package simshell

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// baseMounts is the mount table of a freshly booted target.
var baseMounts = []mountEntry{
	{"rootfs", "/", "rootfs", "rw"},
	{"proc", "/proc", "proc", "rw,relatime"},
	{"sysfs", "/sys", "sysfs", "rw,relatime"},
	{"devtmpfs", "/dev", "devtmpfs", "rw,relatime,mode=755"},
	{"tmpfs", "/tmp", "tmpfs", "rw,relatime"},
}

// cmdMount prints the mount table, or records `mount [-t TYPE] [-o OPTS]
// DEV DIR` (nothing is actually mounted).
func cmdMount(c *call) error {
	o, rest, err := c.getopt("t:o:arnvf")
	if err != nil {
		return err
	}
	c.sh.mu.Lock()
	table := append(append([]mountEntry{}, baseMounts...), c.sh.mounts...)
	c.sh.mu.Unlock()
	if len(rest) == 0 {
		for _, m := range table {
			fmt.Fprintf(c.stdout, "%s on %s type %s (%s)\n", m.dev, m.dir, m.typ, m.opts)
		}
		return nil
	}
	if len(rest) != 2 {
		return c.fail("usage: mount [-t TYPE] [-o OPTS] DEVICE DIR")
	}
	dev, dir := rest[0], c.abs(rest[1])
	if fi, err := c.sh.fs.stat(dir, true); err != nil || !fi.IsDir() {
		return c.fail("mounting %s on %s failed: No such file or directory", dev, rest[1])
	}
	typ := o.val('t', "")
	if strings.HasPrefix(dev, "/") {
		p := c.abs(dev)
		known := false
		for d := range c.sh.fs.disks {
			if p == d || strings.HasPrefix(p, d) && strings.Trim(strings.TrimPrefix(p, d), "p0123456789") == "" {
				known = true
			}
		}
		if !known {
			return c.fail("mounting %s on %s failed: No such device or address", dev, rest[1])
		}
		if typ == "" {
			typ = "ext4"
		}
	} else if typ == "" {
		typ = dev
	}
	opts := "rw,relatime"
	if v := o.val('o', ""); v != "" {
		opts = v
	}
	if o.has('r') {
		opts = "ro,relatime"
	}
	c.sh.mu.Lock()
	c.sh.mounts = append(c.sh.mounts, mountEntry{dev, dir, typ, opts})
	c.sh.mu.Unlock()
	return nil
}

func cmdUmount(c *call) error {
	_, rest, err := c.getopt("flrn")
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return c.fail("usage: umount DIR")
	}
	status := 0
	for _, a := range rest {
		p := c.abs(a)
		found := false
		c.sh.mu.Lock()
		for i := len(c.sh.mounts) - 1; i >= 0; i-- {
			if m := c.sh.mounts[i]; m.dir == p || m.dev == a || m.dev == p {
				c.sh.mounts = append(c.sh.mounts[:i], c.sh.mounts[i+1:]...)
				found = true
				break
			}
		}
		c.sh.mu.Unlock()
		if !found {
			fmt.Fprintf(c.stderr, "umount: can't unmount %s: Invalid argument\n", a)
			status = 1
		}
	}
	return exitOr(status)
}

// unameFields splits Config.Uname into sysname, release, version, machine.
func (s *Shell) unameFields() (sys, release, version, machine string) {
	f := strings.Fields(s.cfg.Uname)
	if len(f) > 0 && f[len(f)-1] == "GNU/Linux" {
		f = f[:len(f)-1]
	}
	switch {
	case len(f) >= 5:
		return f[0], f[2], strings.Join(f[3:len(f)-1], " "), f[len(f)-1]
	case len(f) >= 3:
		return f[0], f[2], "", ""
	case len(f) >= 1:
		return f[0], "", "", ""
	}
	return "Linux", "", "", ""
}

func cmdUname(c *call) error {
	o, _, err := c.getopt("asnrvmpio")
	if err != nil {
		return err
	}
	sys, release, version, machine := c.sh.unameFields()
	c.sh.mu.Lock()
	host := c.sh.hostname
	c.sh.mu.Unlock()
	if o.has('a') {
		f := strings.Fields(c.sh.cfg.Uname)
		if len(f) > 1 {
			f[1] = host
		}
		_, err := fmt.Fprintln(c.stdout, strings.Join(f, " "))
		return err
	}
	var out []string
	add := func(flag byte, v string) {
		if o.has(flag) && v != "" {
			out = append(out, v)
		}
	}
	if len(o.count) == 0 {
		o.count['s'] = 1
	}
	add('s', sys)
	add('n', host)
	add('r', release)
	add('v', version)
	add('m', machine)
	add('p', machine)
	add('i', machine)
	add('o', "GNU/Linux")
	_, err = fmt.Fprintln(c.stdout, strings.Join(out, " "))
	return err
}

func cmdHostname(c *call) error {
	o, rest, err := c.getopt("sifdF:")
	if err != nil {
		return err
	}
	c.sh.mu.Lock()
	defer c.sh.mu.Unlock()
	switch {
	case len(rest) > 0:
		c.sh.hostname = rest[0]
		return nil
	case o.has('i'):
		ip, _, _ := c.sh.netInfo()
		fmt.Fprintln(c.stdout, ip)
	case o.has('s'):
		fmt.Fprintln(c.stdout, strings.SplitN(c.sh.hostname, ".", 2)[0])
	default:
		fmt.Fprintln(c.stdout, c.sh.hostname)
	}
	return nil
}

// cmdKexec is kexec-tools' kexec: -l KERNEL [--initrd=FILE]
// [--append=STR|--command-line=STR] loads, -e boots what was loaded
// (through Hooks.Kexec), -u unloads, -f loads and boots at once.
func cmdKexec(c *call) error {
	var kernel, initrd, cmdline string
	load, exec, unload, force := false, false, false, false
	args := c.args
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() (string, error) {
			if _, v, ok := strings.Cut(a, "="); ok {
				return v, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("option '%s' requires an argument", a)
			}
			i++
			return args[i], nil
		}
		name, _, _ := strings.Cut(a, "=")
		var err error
		switch name {
		case "-l", "--load":
			load = true
			if name == a && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				kernel = args[i]
			}
		case "-e", "--exec":
			exec = true
		case "-u", "--unload":
			unload = true
		case "-f", "--force":
			force = true
		case "--initrd", "--ramdisk":
			initrd, err = val()
		case "--append", "--command-line":
			cmdline, err = val()
		case "--reuse-cmdline":
			b, rerr := c.sh.fs.root.ReadFile("proc/cmdline")
			if rerr == nil {
				cmdline = strings.TrimSpace(string(b))
			}
		case "--dtb", "-t", "--type":
			_, err = val()
		case "-x", "--no-ifdown", "-d", "--debug":
		default:
			if strings.HasPrefix(a, "-") {
				return c.fail("unrecognized option '%s'", a)
			}
			kernel = a
		}
		if err != nil {
			return c.fail("%v", err)
		}
	}
	switch {
	case unload:
		c.sh.mu.Lock()
		c.sh.kexec = nil
		c.sh.mu.Unlock()
		return nil
	case load || force:
		if kernel == "" {
			return c.fail("no kernel specified")
		}
		img := &kexecImage{cmdline: cmdline}
		var err error
		if img.kernel, err = c.readFile(kernel); err != nil {
			return c.fail("cannot open '%s': %s", kernel, errnoText(err))
		}
		if initrd != "" {
			if img.initrd, err = c.readFile(initrd); err != nil {
				return c.fail("cannot open '%s': %s", initrd, errnoText(err))
			}
		}
		c.sh.mu.Lock()
		c.sh.kexec = img
		c.sh.mu.Unlock()
		if !force {
			return nil
		}
		fallthrough
	case exec:
		c.sh.mu.Lock()
		img := c.sh.kexec
		c.sh.mu.Unlock()
		if img == nil {
			return c.fail("Nothing has been loaded!")
		}
		fmt.Fprintf(c.stdout, "[%s] kexec_core: Starting new kernel\n", c.sh.stamp())
		c.sh.emit("sim.kexec", map[string]any{"kernel_bytes": len(img.kernel), "initrd_bytes": len(img.initrd), "append": img.cmdline})
		if h := c.sh.cfg.Hooks.Kexec; h != nil {
			h(img.kernel, img.initrd, img.cmdline)
		}
		c.sh.setHalt(ErrKexec)
		return nil
	}
	fmt.Fprintln(c.stderr, "Usage: kexec [OPTIONS] -l KERNEL [--initrd=FILE] [--append=STRING] | -e | -u")
	return exitCode(1)
}

// readFile reads a whole target file, up to 1 GiB.
func (c *call) readFile(p string) ([]byte, error) {
	r, err := c.input(p)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, 1<<30))
}

// stamp is a kernel log timestamp: seconds since the shell started.
func (s *Shell) stamp() string {
	d := time.Since(s.start)
	return fmt.Sprintf("%5d.%06d", int(d.Seconds()), d.Microseconds()%1e6)
}

// cmdPower is reboot, poweroff and halt: it prints what the system says
// while it goes down, calls the hook and stops the shell.
func cmdPower(c *call) error {
	if _, _, err := c.getopt("fnd:"); err != nil {
		return err
	}
	fmt.Fprint(c.stdout, "The system is going down NOW!\nSent SIGTERM to all processes\nSent SIGKILL to all processes\n")
	switch c.name {
	case "reboot":
		fmt.Fprintf(c.stdout, "Requesting system reboot\n[%s] reboot: Restarting system\n", c.sh.stamp())
		c.sh.emit("sim.reboot", nil)
		if h := c.sh.cfg.Hooks.Reboot; h != nil {
			h()
		}
		c.sh.setHalt(ErrReboot)
	default:
		what := "poweroff"
		if c.name == "halt" {
			what = "halt"
		}
		fmt.Fprintf(c.stdout, "Requesting system %s\n[%s] reboot: Power down\n", what, c.sh.stamp())
		c.sh.emit("sim.poweroff", nil)
		if h := c.sh.cfg.Hooks.Poweroff; h != nil {
			h()
		}
		c.sh.setHalt(ErrPoweroff)
	}
	return nil
}

func cmdSync(*call) error { return nil }

// cmdSleep sleeps for the sum of its arguments (N[.N][smhd]); ^C and the
// shell stopping end it.
func cmdSleep(c *call) error {
	if len(c.args) == 0 {
		return c.fail("missing operand")
	}
	var total time.Duration
	for _, a := range c.args {
		unit := time.Second
		switch {
		case strings.HasSuffix(a, "s"):
			a = strings.TrimSuffix(a, "s")
		case strings.HasSuffix(a, "m"):
			a, unit = strings.TrimSuffix(a, "m"), time.Minute
		case strings.HasSuffix(a, "h"):
			a, unit = strings.TrimSuffix(a, "h"), time.Hour
		case strings.HasSuffix(a, "d"):
			a, unit = strings.TrimSuffix(a, "d"), 24*time.Hour
		}
		f, err := strconv.ParseFloat(a, 64)
		if err != nil || f < 0 {
			return c.fail("invalid number '%s'", a)
		}
		total += time.Duration(f * float64(unit))
	}
	t := time.NewTimer(total)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
}

// cmdDate prints the time in UTC, busybox style, or as +FORMAT (a strftime
// subset).
func cmdDate(c *call) error {
	now := time.Now().UTC()
	for _, a := range c.args {
		if strings.HasPrefix(a, "+") {
			_, err := fmt.Fprintln(c.stdout, strftime(a[1:], now))
			return err
		}
	}
	_, err := fmt.Fprintln(c.stdout, now.Format("Mon Jan _2 15:04:05 MST 2006"))
	return err
}

func strftime(f string, t time.Time) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 == len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch f[i] {
		case 'Y':
			b.WriteString(t.Format("2006"))
		case 'm':
			b.WriteString(t.Format("01"))
		case 'd':
			b.WriteString(t.Format("02"))
		case 'e':
			b.WriteString(t.Format("_2"))
		case 'H':
			b.WriteString(t.Format("15"))
		case 'M':
			b.WriteString(t.Format("04"))
		case 'S':
			b.WriteString(t.Format("05"))
		case 's':
			b.WriteString(strconv.FormatInt(t.Unix(), 10))
		case 'N':
			b.WriteString(fmt.Sprintf("%09d", t.Nanosecond()))
		case 'F':
			b.WriteString(t.Format("2006-01-02"))
		case 'T':
			b.WriteString(t.Format("15:04:05"))
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'b':
			b.WriteString(t.Format("Jan"))
		case 'Z':
			b.WriteString(t.Format("MST"))
		case 'z':
			b.WriteString(t.Format("-0700"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(f[i])
		}
	}
	return b.String()
}

func cmdUptime(c *call) error {
	up := time.Since(c.sh.start)
	_, err := fmt.Fprintf(c.stdout, " %s up %d min,  load average: 0.00, 0.00, 0.00\n", time.Now().UTC().Format("15:04:05"), int(up.Minutes()))
	return err
}

func cmdDmesg(c *call) error {
	log := c.sh.cfg.BootLog
	if log != "" && !strings.HasSuffix(log, "\n") {
		log += "\n"
	}
	_, err := io.WriteString(c.stdout, log)
	return err
}

func cmdFree(c *call) error {
	_, err := fmt.Fprint(c.stdout, ""+
		"              total        used        free      shared  buff/cache   available\n"+
		"Mem:        4137216       61440     3964928        8192      110848     4014592\n"+
		"Swap:             0           0           0\n")
	return err
}

func cmdDf(c *call) error {
	_, err := fmt.Fprint(c.stdout, ""+
		"Filesystem           1K-blocks      Used Available Use% Mounted on\n"+
		"rootfs                 2068608     16384   2052224   1% /\n"+
		"devtmpfs               2068608         0   2068608   0% /dev\n"+
		"tmpfs                  2068608         4   2068604   0% /tmp\n")
	return err
}

func cmdID(c *call) error {
	_, err := fmt.Fprintln(c.stdout, "uid=0(root) gid=0(root) groups=0(root)")
	return err
}

func cmdWhoami(c *call) error {
	_, err := fmt.Fprintln(c.stdout, "root")
	return err
}

// cmdStty switches the console's echo (stty -echo / stty echo); other
// settings are accepted and ignored.
func cmdStty(c *call) error {
	if len(c.args) == 0 || c.args[0] == "-a" || c.args[0] == "-g" {
		echo := "echo"
		if !c.sh.echoing() {
			echo = "-echo"
		}
		_, err := fmt.Fprintf(c.stdout, "speed 115200 baud; line = 0;\n%s icanon onlcr\n", echo)
		return err
	}
	for _, a := range c.args {
		switch a {
		case "echo", "sane", "cooked":
			c.sh.setEcho(true)
		case "-echo", "raw":
			c.sh.setEcho(false)
		}
	}
	return nil
}

func (s *Shell) setEcho(on bool) {
	s.mu.Lock()
	s.echo = on
	s.mu.Unlock()
}

func cmdClear(c *call) error {
	_, err := io.WriteString(c.stdout, "\x1b[H\x1b[J")
	return err
}
