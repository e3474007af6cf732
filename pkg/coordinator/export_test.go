package coordinator

import "time"

// SeedPace makes c remember function's pace on its pool as if a job had
// run it at rate tasks a second, each for run.
func SeedPace(c *Coordinator, function string, rate float64, run time.Duration) {
	c.pace.learn(paceKey(c.cfg.Pool, function), rate, run, time.Now())
}

// Backlog is the bound of a job c holds on its tasks queued or running
// (-1: c holds no such job).
func Backlog(c *Coordinator, id string) int64 {
	j, err := c.job(id)
	if err != nil {
		return -1
	}
	return j.backlog.Load()
}
