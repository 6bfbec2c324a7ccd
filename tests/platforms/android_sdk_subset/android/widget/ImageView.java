// Declarations only (bodies throw): the subset of the Android SDK (API 35) that android_demo calls,
// signatures as developer.android.com/reference documents them, so kotlinc rejects a misspelt call.
package android.widget;
import android.content.Context;
import android.graphics.Bitmap;
public class ImageView extends android.view.View {
    public ImageView(Context context) { super(context); throw new RuntimeException("Stub!"); }
    public void setImageBitmap(Bitmap bm) { throw new RuntimeException("Stub!"); }
    public boolean getAdjustViewBounds() { throw new RuntimeException("Stub!"); }
    public void setAdjustViewBounds(boolean adjustViewBounds) { throw new RuntimeException("Stub!"); }
    public int getMaxHeight() { throw new RuntimeException("Stub!"); }
    public void setMaxHeight(int maxHeight) { throw new RuntimeException("Stub!"); }
}
