package spec

import "gopkg.in/yaml.v3"

// topHealth reads the top-level health: (allowed without a stack) and
// reconciles it with stack.health: one of the two, never both.
func (l *loader) topHealth(s *Spec, f *fields) {
	var inStack *yaml.Node
	if n, ok := f.optional("stack"); ok && n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "health" {
				inStack = n.Content[i]
			}
		}
	}
	n, ok := f.optional("health")
	switch {
	case ok && inStack != nil:
		l.errorf(n, "health: stack.health (line %d) is also set; keep one of the two", inStack.Line)
	case ok:
		h := l.health("health", n)
		s.Health = &h
		if s.Stack != nil {
			s.Stack.Health = h
		}
	case inStack != nil && s.Stack != nil:
		h := s.Stack.Health
		s.Health = &h
	}
}
