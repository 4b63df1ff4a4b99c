// Counts the runs of an sk_msg program, and the bytes each saw, for single writes of
// several sizes on a loopback TCP connection: does the kernel hand a write of 600 KB to
// the program in one run?
package main

import (
	"fmt"
	"io"
	"net"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	sizes, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Queue, ValueSize: 4, MaxEntries: 4096})
	must(err)
	socks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.SockHash, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	must(err)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SkMsg, License: "GPL", AttachType: ebpf.AttachSkMsgVerdict,
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 68, asm.Word), // sk_msg_md.size
			asm.StoreMem(asm.RFP, -4, asm.R2, asm.Word),
			asm.LoadMapPtr(asm.R1, sizes.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnMapPushElem.Call(),
			asm.Mov.Imm(asm.R0, 1), // SK_PASS
			asm.Return(),
		},
	})
	must(err)
	must(link.RawAttachProgram(link.RawAttachProgramOptions{Target: socks.FD(), Program: prog, Attach: ebpf.AttachSkMsgVerdict}))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	go func() {
		c, err := ln.Accept()
		must(err)
		io.Copy(io.Discard, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	must(err)
	f, err := c.(*net.TCPConn).File()
	must(err)
	must(socks.Update(uint32(0), uint64(f.Fd()), ebpf.UpdateAny))
	for _, n := range []int{117, 60118, 65536, 200000, 540230, 600237, 1 << 20} {
		_, err := c.Write(make([]byte, n))
		must(err)
		var runs []uint32
		var v uint32
		for sizes.LookupAndDelete(nil, &v) == nil {
			runs = append(runs, v)
		}
		fmt.Printf("write of %d bytes: %d runs, sizes %v\n", n, len(runs), runs)
	}
}
