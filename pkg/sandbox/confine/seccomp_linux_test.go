package confine

import "testing"

// Every combination of options assembles (every jump lands inside the
// program, forward, within reach) and ends in a return.
func TestFilterAssembles(t *testing.T) {
	for i := 0; i < 8; i++ {
		f := Filter{NoPtrace: i&1 != 0, NoChroot: i&2 != 0, AllowDevices: i&4 != 0}
		prog, err := f.program()
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		if len(prog) == 0 || len(prog) > 4096 {
			t.Fatalf("%+v: %d instructions", f, len(prog))
		}
		for pc, ins := range prog {
			if ins.Code&0x07 == 0x05 && ins.Code != 0x05 { // conditional jumps
				if pc+1+int(ins.Jt) >= len(prog) || pc+1+int(ins.Jf) >= len(prog) {
					t.Fatalf("%+v: jump at %d leaves the program", f, pc)
				}
			}
		}
		if last := prog[len(prog)-1]; last.Code != 0x06 {
			t.Fatalf("%+v: the program does not end in a return", f)
		}
	}
}
