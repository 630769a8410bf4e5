"""Built-in fusion strategies, each written exactly as a research user would write one."""
