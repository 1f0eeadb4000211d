package localcloud

// ClearFaults removes every injected fault: the API behaves from now on.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}
