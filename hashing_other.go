//go:build !linux

// hashing_other.go is lowerThreadPriority for systems other than Linux,
// where a priority is not kept per thread the same way: hashing there
// runs at the process's own priority, and only the pool's wait bound
// protects the other requests.
package main

func lowerThreadPriority() error { return nil }
