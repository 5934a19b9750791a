"""Grayscale Softcopy Presentation States (medview.viewer.gsps) made with highdicom for
the real CR: found beside the image, parsed, applied in the viewer and switched off."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from medview.viewer import gsps


def make_gsps(image_path, out_path, shutter: bool = True) -> str:
    """A GSPS (highdicom) for one image: window 100/80, a line, a circle and a text."""
    hd = pytest.importorskip("highdicom")
    import pydicom
    from highdicom.pr import (
        AnnotationUnitsValues,
        GraphicAnnotation,
        GraphicLayer,
        GraphicObject,
        GraphicTypeValues,
        GrayscaleSoftcopyPresentationState,
        SoftcopyVOILUTTransformation,
        TextObject,
    )
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(image_path)
    layer = GraphicLayer(layer_name="LAYER1", order=1)
    line = GraphicObject(
        graphic_type=GraphicTypeValues.POLYLINE,
        graphic_data=np.array([[100.0, 100.0], [400.0, 100.0]]),
        units=AnnotationUnitsValues.PIXEL,
    )
    circle = GraphicObject(
        graphic_type=GraphicTypeValues.CIRCLE,
        graphic_data=np.array([[500.0, 500.0], [540.0, 500.0]]),
        units=AnnotationUnitsValues.PIXEL,
    )
    text = TextObject(
        text_value="nodule?", units=AnnotationUnitsValues.PIXEL, anchor_point=(300.0, 300.0)
    )
    ann = GraphicAnnotation(
        referenced_images=[ds],
        graphic_layer=layer,
        graphic_objects=[line, circle],
        text_objects=[text],
    )
    voi = SoftcopyVOILUTTransformation(
        window_center=100.0,
        window_width=80.0,
        referenced_images=hd.ReferencedImageSequence(referenced_images=[ds]),
    )
    pr = GrayscaleSoftcopyPresentationState(
        referenced_images=[ds],
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
        content_label="READ1",
        graphic_annotations=[ann],
        graphic_layers=[layer],
        voi_lut_transformations=[voi],
    )
    if shutter:
        pr.ShutterShape = "RECTANGULAR"
        pr.ShutterLeftVerticalEdge, pr.ShutterRightVerticalEdge = 50, 980
        pr.ShutterUpperHorizontalEdge, pr.ShutterLowerHorizontalEdge = 40, 1000
    pr.save_as(out_path)
    return str(ds.SOPInstanceUID)


@pytest.fixture()
def study(xray_dir, tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(xray_dir / "cr_chest_pa_jpeg_baseline.dcm", folder / "cr.dcm")
    sop = make_gsps(folder / "cr.dcm", folder / "pr.dcm")
    return folder, sop


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gsps_is_found_beside_its_image_and_parsed(study):
    folder, sop = study
    found = gsps.find_presentation_states([str(folder)], {sop})
    assert len(found) == 1
    pr = found[0]
    assert (pr.label, pr.window_for(sop), pr.referenced) == ("READ1", (100.0, 80.0), {sop})
    kinds = [(g.kind, g.points, g.text) for g in pr.graphics_for(sop)]
    assert kinds == [
        ("POLYLINE", [(100.0, 100.0), (400.0, 100.0)], ""),
        ("CIRCLE", [(500.0, 500.0), (540.0, 500.0)], ""),
        ("TEXT", [(300.0, 300.0)], "nodule?"),
    ]
    assert pr.shutter.shapes == ["RECTANGULAR"] and pr.shutter.rect == (50.0, 980.0, 40.0, 1000.0)
    assert gsps.find_presentation_states([str(folder)], {"1.2.3"}) == []  # another image's
