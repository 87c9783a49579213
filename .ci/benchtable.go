//go:build ignore

// benchtable reads `go test -bench` output on stdin and prints each
// figure of basalt beside its anchor: `make bench` ends with it. Two forms
// pair up: metrics of one line named basalt-UNIT and OTHER-UNIT
// (BenchmarkTFTP: basalt-MB/s, tftpd-hpa-MB/s; BenchmarkDirectBoot:
// basalt-s/boot, bare-s/boot), and lines whose names differ only in a
// path element basalt versus another (BenchmarkOps/basalt/x and
// BenchmarkOps/ipmitool/x; BenchmarkConsole/basalt and
// BenchmarkConsole/goexpect). Other lines are listed without an anchor.
// An anchor whose name ends in -quoted is a figure quoted from an issue, not
// measured here (LAVA-quoted: LAVA cannot be installed on this machine); its
// row says so. A metric named overhead-UNIT of a paired line gets a row of
// its own (BenchmarkRunTrue: the median of the paired differences).
//
//	go run .ci/benchtable.go < bench.log
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

type line struct {
	pkg   string // the "pkg:" line go test printed before it
	name  string
	units []string
	vals  map[string]float64
}

var procs = regexp.MustCompile(`-\d+$`)

func main() {
	var lines []*line
	byName := map[string]*line{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	pkg := ""
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "pkg: "); ok {
			pkg = p
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		l := &line{pkg: pkg, name: procs.ReplaceAllString(f[0], ""), vals: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			l.units = append(l.units, f[i+1])
			l.vals[f[i+1]] = v
		}
		lines = append(lines, l)
		byName[l.name] = l
	}
	fmt.Println()
	fmt.Printf("%-58s | %14s | %-34s | %s\n", "figure", "basalt", "anchor", "ratio basalt/anchor")
	fmt.Println(strings.Repeat("-", 58) + "-+-" + strings.Repeat("-", 14) + "-+-" + strings.Repeat("-", 34) + "-+-" + strings.Repeat("-", 24))
	used := map[string]bool{}
	for _, l := range lines {
		paired := false
		// Metrics of one line.
		for _, u := range l.units {
			suf, ok := strings.CutPrefix(u, "basalt-")
			if !ok || strings.Contains(suf, "min-") || strings.Contains(suf, "max-") {
				continue
			}
			for _, a := range l.units {
				other, ok := strings.CutSuffix(a, "-"+suf)
				if !ok || other == "basalt" || other == "overhead" || strings.HasSuffix(other, "-min") || strings.HasSuffix(other, "-max") {
					continue
				}
				row(l.name+" "+suf, l.vals[u], other, l.vals[a], suf)
				// The spread, where the benchmark reports it.
				lo, okl := l.vals["basalt-min-"+suf]
				hi, okh := l.vals["basalt-max-"+suf]
				alo, aokl := l.vals[other+"-min-"+suf]
				ahi, aokh := l.vals[other+"-max-"+suf]
				if okl && okh && aokl && aokh {
					fmt.Printf("%-58s | %14s | %-34s |\n", "  min–max", fmt.Sprintf("%.3g–%.3g", lo, hi), fmt.Sprintf("%s %.3g–%.3g", other, alo, ahi))
				} else if okl && okh {
					fmt.Printf("%-58s | %14s | %-34s |\n", "  min–max", fmt.Sprintf("%.3g–%.3g", lo, hi), "")
				}
				if d, ok := l.vals["overhead-"+suf]; ok {
					fmt.Printf("%-58s | %14.4g | %-34s |\n", "  overhead "+suf+" (median of paired differences)", d, "")
				}
				paired = true
			}
		}
		// Lines that differ in a basalt path element.
		el := strings.Split(l.name, "/")
		for i, e := range el {
			if e != "basalt" {
				continue
			}
			for _, m := range lines {
				me := strings.Split(m.name, "/")
				if m == l || m.pkg != l.pkg || len(me) != len(el) || strings.HasPrefix(me[i], "basalt") ||
					strings.Join(me[:i], "/") != strings.Join(el[:i], "/") || strings.Join(me[i+1:], "/") != strings.Join(el[i+1:], "/") {
					continue
				}
				_, hasMS := l.vals["ms/op"]
				for _, u := range l.units {
					if u == "ns/op" && hasMS {
						continue
					}
					if _, ok := m.vals[u]; ok && (u == "ms/op" || u == "ns/op" || u == "MB/s" || u == "peak-heap-MiB" || u == "cpu-s/op") {
						row(l.name+" "+u, l.vals[u], me[i], m.vals[u], u)
					}
				}
				used[m.name] = true
				paired = true
			}
		}
		if !paired && !used[l.name] {
			// Its own figure: the first metric it reports itself, else
			// the time per op.
			u := "ns/op"
			for _, x := range l.units {
				if x != "ns/op" && x != "B/op" && x != "allocs/op" {
					u = x
					break
				}
			}
			fmt.Printf("%-58s | %14.4g | %-34s | %s\n", l.name+" "+u, l.vals[u], "—", "—")
		}
	}
}

func row(figure string, v float64, anchor string, a float64, unit string) {
	better := "higher is better"
	if strings.Contains(unit, "s/") || strings.Contains(unit, "/op") || strings.Contains(unit, "MiB") || strings.Contains(unit, "MB") && !strings.Contains(unit, "MB/s") {
		better = "lower is better"
	}
	ratio := "—"
	if a != 0 {
		ratio = fmt.Sprintf("%.3g× (%s)", v/a, better)
	}
	label := fmt.Sprintf("%s %.4g", anchor, a)
	if name, ok := strings.CutSuffix(anchor, "-quoted"); ok {
		u, _, _ := strings.Cut(unit, "/")
		label = fmt.Sprintf("%s %.4g %s (quoted, issue #10)", name, a, u)
	}
	fmt.Printf("%-58s | %14.4g | %-34s | %s\n", figure, v, label, ratio)
}
