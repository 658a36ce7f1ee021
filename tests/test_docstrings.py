"""Every public docstring passes numpydoc's validator, as scikit-learn checks its own.

The public objects are those of each public module's ``__all__``, classes with their public methods and
properties. Ignored, as scikit-learn ignores them: GL01 and GL02 (where the summary starts), RT02 (a named
return value, which lets a docstring refer to it), and for methods and properties only ES01, SA01 and EX01 (an
extended summary, a See Also section and examples): classes and functions must have them.
"""

import importlib
import inspect
import pkgutil

import pytest

import sklearn_uflow

numpydoc_validation = pytest.importorskip("numpydoc.validate")

IGNORED = {"GL01", "GL02", "RT02"}
IGNORED_FOR_METHODS = {"ES01", "SA01", "EX01"}


def _public_objects():
    seen, names = set(), []
    for info in pkgutil.iter_modules(sklearn_uflow.__path__):
        if info.name.startswith("_") or info.name == "conftest":
            continue
        module = importlib.import_module(f"sklearn_uflow.{info.name}")
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue  # constants; an alias names an object already listed
            seen.add(id(obj))
            names.append(f"sklearn_uflow.{info.name}.{name}")
            if inspect.isclass(obj):
                names += [f"sklearn_uflow.{info.name}.{name}.{attribute}" for attribute, value in vars(obj).items()
                          if not attribute.startswith("_")
                          and (inspect.isfunction(value) or isinstance(value, (classmethod, property)))]
    return names


PUBLIC = _public_objects()


def test_the_public_objects_are_found():
    assert "sklearn_uflow.detector.UFlowDetector.predict_masks" in PUBLIC
    assert "sklearn_uflow.acontrario.ACotrarioSegmenter.fit" in PUBLIC
    assert len(PUBLIC) > 100


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring(name):
    is_method = name.count(".") > 2  # sklearn_uflow.module.Class.method
    ignored = IGNORED | IGNORED_FOR_METHODS if is_method else IGNORED
    errors = [f"{code}: {message}" for code, message in numpydoc_validation.validate(name)["errors"]
              if code not in ignored]
    assert not errors, "\n".join([name, *errors])
