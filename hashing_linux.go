//go:build linux

package main

import (
	"fmt"
	"syscall"
)

// lowerThreadPriority sets the calling thread alone to nice 19, for good
// (raising it needs CAP_SYS_NICE); the main thread, whose threads inherit
// its nice value, is refused.
func lowerThreadPriority() error {
	tid := syscall.Gettid()
	if tid == syscall.Getpid() {
		return errMainThread
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, 19); err != nil {
		return fmt.Errorf("lower the priority of a hashing thread: %w", err)
	}
	return nil
}
