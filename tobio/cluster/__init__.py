"""Several kernels on one PostgreSQL: ids from sequences, single-kernel guards for file databases.

DuckDB and SQLite files stay one kernel each (`single.py`); on PostgreSQL every kernel reserves ids in
blocks from one sequence per table (`ids.py`), so two kernels never use an id twice.
"""
