package simshell

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/basalt-lab/basalt/builtins/target/simdisk"
)

// partition finds the partition device p ("/dev/sda2") in the MBR of one
// of the disks, as the Linux kernel creates /dev/sdaN for each used entry
// of the partition table it reads at boot (here: at every open, so a
// partition table written with dd shows at once, as after `blockdev
// --rereadpt`). ok is false when p is not a partition of a disk that has
// it: there is no device node then (ENOENT).
func (v *vfs) partition(p string) (host string, part simdisk.Partition, ok bool) {
	for dev, h := range v.disks {
		rest, found := strings.CutPrefix(p, dev)
		if !found || rest == "" {
			continue
		}
		// /dev/sda2, /dev/mmcblk0p2: the kernel adds "p" when the disk's
		// name ends in a digit.
		if last := dev[len(dev)-1]; last >= '0' && last <= '9' {
			if rest, found = strings.CutPrefix(rest, "p"); !found {
				continue
			}
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 || strconv.Itoa(n) != rest {
			continue
		}
		f, err := os.Open(h)
		if err != nil {
			return "", part, false
		}
		parts, err := simdisk.ReadPartitions(f)
		f.Close()
		if err != nil || n > len(parts) || parts[n-1].Size == 0 {
			return "", part, false
		}
		return h, parts[n-1], true
	}
	return "", part, false
}

// partitions yields the partition devices of every disk.
func (v *vfs) partitions(yield func(string) bool) {
	for dev, h := range v.disks {
		f, err := os.Open(h)
		if err != nil {
			continue
		}
		parts, err := simdisk.ReadPartitions(f)
		f.Close()
		if err != nil {
			continue
		}
		sep := ""
		if last := dev[len(dev)-1]; last >= '0' && last <= '9' {
			sep = "p"
		}
		for i, p := range parts {
			if p.Size > 0 && !yield(dev+sep+strconv.Itoa(i+1)) {
				return
			}
		}
	}
}

// openPartition opens a window of the disk file host: reads stop at the
// partition's end (EOF) and writes past it fail with ENOSPC, as they do on
// a Linux block device.
func openPartition(p, host string, part simdisk.Partition, flag int) (file, error) {
	flag &^= os.O_TRUNC | os.O_APPEND | os.O_EXCL | os.O_CREATE
	f, err := os.OpenFile(host, flag, 0)
	if err != nil {
		return nil, pathError("open", p, err)
	}
	return &partFile{f: f, name: p, start: part.Start, size: part.Size}, nil
}

type partFile struct {
	f           *os.File
	name        string
	start, size int64
	off         int64
}

func (pf *partFile) Read(b []byte) (int, error) {
	if pf.off >= pf.size {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), pf.size-pf.off)]
	n, err := pf.f.ReadAt(b, pf.start+pf.off)
	pf.off += int64(n)
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil
	}
	if errors.Is(err, io.EOF) {
		// The disk file is sparse and shorter than its table says: the
		// rest of the partition reads as zeros, as a fresh disk does.
		clear(b)
		pf.off += int64(len(b))
		return len(b), nil
	}
	return n, err
}

func (pf *partFile) Write(b []byte) (int, error) {
	room := pf.size - pf.off
	if room <= 0 {
		return 0, &fs.PathError{Op: "write", Path: pf.name, Err: syscall.ENOSPC}
	}
	short := int64(len(b)) > room
	n, err := pf.f.WriteAt(b[:min(int64(len(b)), room)], pf.start+pf.off)
	pf.off += int64(n)
	if err == nil && short {
		err = &fs.PathError{Op: "write", Path: pf.name, Err: syscall.ENOSPC}
	}
	return n, err
}

func (pf *partFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += pf.off
	case io.SeekEnd:
		off += pf.size
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "seek", Path: pf.name, Err: syscall.EINVAL}
	}
	pf.off = off
	return off, nil
}

func (pf *partFile) Close() error { return pf.f.Close() }

// partInfo is the FileInfo of a partition device.
func partInfo(p string, part simdisk.Partition) fs.FileInfo {
	return devInfo{name: path.Base(p), mode: fs.ModeDevice | 0o660, size: part.Size}
}
