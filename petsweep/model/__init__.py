"""Loading a backbone, the heads petsweep adds, attaching a method and counting parameters (on the
meta device too), sizing a method to a budget, init_from, how a task is cast onto a family."""
