package client

import "time"

// SetWatchIdleTimeout shortens how long c's watch streams may stay silent,
// so that tests need not wait DefaultWatchIdleTimeout.
func SetWatchIdleTimeout(c *Client, d time.Duration) { c.watchIdle = d }
