"""Result tables, the suite's 8 figures and their report captions, from run and evaluation directories."""
