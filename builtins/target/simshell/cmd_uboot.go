package simshell

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/basalt-lab/basalt/builtins/target/simdisk"
)

// fw_printenv and fw_setenv are libubootenv's tools (libubootenv-tool
// 0.3.2, what SWUpdate and RAUC call on U-Boot boards): they read and write
// the bootloader's environment where /etc/fw_env.config says it is,
// "DEVICE OFFSET SIZE" per line. Their output and exit statuses are
// libubootenv's, checked by a differential test (uboot_test.go) that runs
// the real tools on the same environment: `fw_printenv` prints name=value
// lines, `-n NAME` the value alone, a missing NAME prints "NAME=" and
// exits 0; `fw_setenv NAME VALUE` sets one variable (only the first value
// word counts, as in 0.3.2), `fw_setenv NAME` deletes it. One environment
// copy, no redundant one.

const fwEnvConfig = "/etc/fw_env.config"

// fwEnv is where the environment is: a device, an offset and a size; and
// what it held when read.
type fwEnv struct {
	dev       string
	off, size int64
	raw       []byte
}

func (c *call) fwConfig() (fwEnv, error) {
	cfg := fwEnvConfig
	o, _, err := c.getopt("c:f:nhVs:")
	if err == nil && o.val('c', "") != "" {
		cfg = o.val('c', "")
	}
	data, err := c.readFile(cfg)
	if err != nil {
		return fwEnv{}, errNoConfig
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 3 {
			break
		}
		off, err1 := strconv.ParseInt(f[1], 0, 64)
		size, err2 := strconv.ParseInt(f[2], 0, 64)
		if err1 != nil || err2 != nil || off < 0 || size < 5 || size > 1<<20 {
			break
		}
		return fwEnv{dev: c.abs(f[0]), off: off, size: size}, nil
	}
	return fwEnv{}, errConfig
}

// libubootenv says the same for a config it cannot read (exit 247) and one
// it cannot parse or whose device it cannot open (exit 234): msgConfig.
var (
	errConfig   = errors.New("bad config")
	errNoConfig = errors.New("no config")
)

const msgConfig = "Configuration file wrong or corrupted"

// readEnv reads the environment; a bad CRC reads as no environment.
func (c *call) readEnv(e fwEnv) (map[string]string, []byte, error) {
	f, err := c.sh.fs.open(e.dev, os.O_RDONLY, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if _, err := f.Seek(e.off, io.SeekStart); err != nil {
		return nil, nil, err
	}
	b := make([]byte, e.size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, nil, err
	}
	vars, err := simdisk.DecodeEnv(b)
	return vars, b, err
}

// fwOpen reads the config and the environment, printing what libubootenv
// prints when it cannot: it exits 234 for a bad config, 243 for an
// environment whose CRC is bad (and no default environment given).
func (c *call) fwOpen() (fwEnv, map[string]string, error) {
	e, err := c.fwConfig()
	if err != nil {
		fmt.Fprintln(c.stderr, msgConfig)
		if err == errNoConfig {
			return e, nil, exitCode(247)
		}
		return e, nil, exitCode(234)
	}
	if _, err := c.sh.fs.stat(e.dev, true); err != nil {
		fmt.Fprintln(c.stderr, msgConfig)
		return e, nil, exitCode(234)
	}
	vars, raw, err := c.readEnv(e)
	if err != nil {
		fmt.Fprintln(c.stderr, "Cannot read environment, using default")
		fmt.Fprintln(c.stderr, "Cannot read default environment from file")
		return e, nil, exitCode(243)
	}
	e.raw = raw
	return e, vars, nil
}

func cmdFwPrintenv(c *call) error {
	o, names, err := c.getopt("c:f:nhV")
	if err != nil {
		return err
	}
	_, vars, err := c.fwOpen()
	if err != nil {
		return err
	}
	if len(names) == 0 {
		keys := make([]string, 0, len(vars))
		for k := range vars {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(c.stdout, "%s=%s\n", k, vars[k])
		}
		return nil
	}
	for _, k := range names {
		if o.has('n') {
			fmt.Fprintln(c.stdout, vars[k])
		} else {
			fmt.Fprintf(c.stdout, "%s=%s\n", k, vars[k])
		}
	}
	return nil
}

func cmdFwSetenv(c *call) error {
	_, args, err := c.getopt("c:f:hVs:")
	if err != nil {
		return err
	}
	e, vars, err := c.fwOpen()
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return nil
	}
	if len(args) == 1 {
		delete(vars, args[0])
	} else {
		vars[args[0]] = args[1]
	}
	// libubootenv writes the entries over the buffer it read and leaves
	// the bytes after the terminating "\0\0" as they were (the CRC covers
	// them): the same bytes, not a cleared tail. It parsed that buffer in
	// place, cutting each "name=value" at its '=', so those '=' are NULs.
	raw := bytes.Clone(e.raw)
	for i := 4; i < len(raw) && raw[i] != 0; {
		end := bytes.IndexByte(raw[i:], 0)
		if end < 0 {
			break
		}
		if eq := bytes.IndexByte(raw[i:i+end], '='); eq >= 0 {
			raw[i+eq] = 0
		}
		i += end + 1
	}
	b, err := simdisk.EncodeEnvOver(raw, vars)
	if err != nil {
		return c.fail("%v", err)
	}
	f, err := c.sh.fs.open(e.dev, os.O_WRONLY, 0)
	if err != nil {
		return c.failErr(e.dev, err)
	}
	defer f.Close()
	if _, err := f.Seek(e.off, io.SeekStart); err != nil {
		return c.failErr(e.dev, err)
	}
	if _, err := f.Write(b); err != nil {
		return c.failErr(e.dev, err)
	}
	return nil
}
