"""custbase: the CLI and the typed configuration."""

import warnings

# pandera imports pyspark.pandas when pyspark is installed, which warns about pandas 3 on every command;
# custbase never uses pyspark.pandas (Spark runs plain SQL and mapInPandas), so the warning is noise here.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
