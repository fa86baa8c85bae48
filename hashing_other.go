//go:build !linux

package main

// Elsewhere hashing keeps the process's priority; the wait bound remains.
func lowerThreadPriority() error { return nil }
