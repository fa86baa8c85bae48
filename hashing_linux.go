//go:build linux

// hashing_linux.go owns the one step of password hashing that depends on
// the operating system: putting a hashing worker's thread at the lowest
// priority, so that the kernel runs request handling first.
package main

import (
	"fmt"
	"syscall"
)

// lowerThreadPriority sets the calling thread's nice value to 19, the
// lowest priority. Linux keeps a nice value per thread, and setpriority
// with a thread id changes that thread alone. The caller must hold its
// thread (runtime.LockOSThread) for good: raising the priority back needs
// CAP_SYS_NICE, so a lowered thread must never run other goroutines.
//
// The process's main thread is left as it is, with errMainThread: ps and
// top show its priority as the whole process's, and threads it starts
// would inherit the lowered one.
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
